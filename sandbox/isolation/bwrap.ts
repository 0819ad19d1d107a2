/**
 * The `bwrap` isolation level: run one command in a hardened bubblewrap sandbox, and find out whether
 * this machine can do that at all.
 */
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { ensureError } from '../../common/errors.ts';
import { SandboxError, SandboxUnavailableError } from './errors.ts';
import { PRLIMIT_PATH } from './limits.ts';
import { DEFAULT_BWRAP_PATH, INSTALL_HINT, spawnSandbox, type SandboxHostOptions } from './sandbox-process.ts';
import type { SandboxResult } from './sandbox-result.ts';
import { compileSandboxSpec, type SandboxSpec } from './sandbox-spec.ts';

/** Options of one run. */
export interface RunInBwrapOptions extends SandboxHostOptions {
  /** Aborting SIGKILLs the sandbox; the run then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Runs `spec.command` in a fresh hardened sandbox (see {@link bwrapArguments} for every guarantee)
 * and resolves with what happened, including wall-clock timeouts (`timedOut`) and output truncation
 * (`outputTruncated`); judge the result with {@link sandboxFailure}. Never runs anything outside a
 * sandbox.
 *
 * @throws SandboxSpecError before spawning anything, for an invalid spec.
 * @throws SandboxUnavailableError when bubblewrap is missing or cannot create namespaces here.
 * @throws SandboxSetupError when bubblewrap rejects the spec (for example a missing bind source).
 * @throws the signal's reason when `signal` aborts (the sandbox is gone by then).
 */
export async function runInBwrap(spec: SandboxSpec, options: RunInBwrapOptions = {}): Promise<SandboxResult> {
  const compiled = compileSandboxSpec(spec);
  options.signal?.throwIfAborted();
  const sandbox = spawnSandbox(compiled, options);
  return sandbox.start(spec.stdin, options.signal ? { signal: options.signal } : {});
}

/**
 * Whether the `bwrap` isolation level works on this machine, and if not, why. `problem` separates a
 * machine that lacks the level (`not-installed`: bubblewrap or prlimit missing; `no-namespaces`: the
 * kernel refuses user namespaces) from a sandbox that should work but did not (`probe-failed`).
 */
export type BwrapAvailability =
  | { ok: true; version: string }
  | { ok: false; problem: 'not-installed' | 'no-namespaces' | 'probe-failed'; reason: string };

function versionOf(bwrapPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bwrapPath, ['--version'], { env: {}, timeout: 5_000 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(stdout.trim().replace(/^bubblewrap\s+/, ''));
    });
  });
}

/**
 * Probes the machine by actually running a trivial command with the full hardening, so a host where
 * bwrap is installed but user namespaces are disabled reports `ok: false`. Never throws.
 */
export async function bwrapAvailable(options: SandboxHostOptions = {}): Promise<BwrapAvailability> {
  const bwrapPath = options.bwrapPath ?? DEFAULT_BWRAP_PATH;
  let version: string;
  try {
    version = await versionOf(bwrapPath);
  } catch (e: unknown) {
    const err = ensureError(e) as NodeJS.ErrnoException;
    const missing = err.code === 'ENOENT';
    return {
      ok: false,
      problem: missing ? 'not-installed' : 'probe-failed',
      reason: `${missing ? `${bwrapPath} not found` : `${bwrapPath} --version failed: ${err.message}`}; ${INSTALL_HINT}`,
    };
  }
  try {
    await access(PRLIMIT_PATH, constants.X_OK);
  } catch {
    return { ok: false, problem: 'not-installed', reason: `${PRLIMIT_PATH} not found; install the Debian package \`util-linux\`` };
  }
  try {
    const result = await runInBwrap({ command: ['true'], limits: { wallClockMs: 10_000 } }, options);
    if (result.exitCode !== 0) {
      return { ok: false, problem: 'probe-failed', reason: `a trivial sandboxed run failed (exit ${result.exitCode}, signal ${result.signal}): ${result.stderr.trim()}` };
    }
  } catch (e: unknown) {
    if (e instanceof SandboxUnavailableError) return { ok: false, problem: 'no-namespaces', reason: e.message };
    return { ok: false, problem: 'probe-failed', reason: e instanceof SandboxError ? e.message : `sandbox probe failed: ${ensureError(e).message}` };
  }
  return { ok: true, version };
}

const verified = new Map<string, Promise<string>>();

/**
 * For tools that demand the `bwrap` level: resolves with the bubblewrap version once the machine has
 * been probed (successes are remembered per bwrap path), and otherwise rejects with a
 * SandboxUnavailableError that names the Debian package `bubblewrap`. There is no weaker fallback.
 */
export function requireBwrap(options: SandboxHostOptions = {}): Promise<string> {
  const key = options.bwrapPath ?? DEFAULT_BWRAP_PATH;
  const known = verified.get(key);
  if (known !== undefined) return known;
  const probe = bwrapAvailable(options).then((availability) => {
    if (availability.ok) return availability.version;
    verified.delete(key);
    throw new SandboxUnavailableError(
      `this tool requires the bwrap isolation level, which is unavailable: ${availability.reason}` +
        (availability.reason.includes('bubblewrap') ? '' : ` (the level needs the Debian package \`bubblewrap\` and user namespaces)`),
    );
  });
  verified.set(key, probe);
  return probe;
}
