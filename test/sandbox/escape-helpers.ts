/**
 * Host-side observation helpers for the bwrap escape suite: what the host can see, independently of
 * what the sandbox reports about itself.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { bwrapAvailable, runInBwrap, type SandboxLimits, type SandboxResult } from '../../sandbox/isolation/index.ts';

/**
 * Why the real-bubblewrap tests must be skipped on this machine, or `undefined` when they must run.
 * Only a machine that lacks the level (bubblewrap not installed, user namespaces refused) skips; a
 * sandbox that should work but fails its probe runs the tests, so they fail loudly.
 */
export async function bwrapSkipReason(): Promise<string | undefined> {
  const availability = await bwrapAvailable();
  if (availability.ok || availability.problem === 'probe-failed') return undefined;
  const reason = `bwrap is unavailable on this machine (${availability.problem}): ${availability.reason}`;
  console.warn(`SKIPPING real-bubblewrap tests: ${reason}`);
  return reason;
}

/** Small limits so the whole suite stays fast. */
export const smallLimits: Partial<SandboxLimits> = {
  memoryBytes: 128 * 1024 * 1024,
  cpuSeconds: 5,
  processes: 24,
  wallClockMs: 5_000,
  outputBytes: 256 * 1024,
  scratchBytes: 8 * 1024 * 1024,
};

/** Runs a POSIX shell script in the sandbox with the suite's small limits. */
export function sh(script: string, options: { limits?: Partial<SandboxLimits>; binds?: { ro?: string[]; rw?: string[] }; cwd?: string } = {}): Promise<SandboxResult> {
  return runInBwrap({
    command: ['sh', '-c', script],
    limits: { ...smallLimits, ...options.limits },
    ...(options.binds ? { binds: options.binds } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
}

/** Runs a Python 3 script in the sandbox (ctypes reaches raw syscalls). */
export function py(script: string): Promise<SandboxResult> {
  return runInBwrap({ command: ['python3', '-c', script], limits: smallLimits });
}

/** Every host process with its raw (NUL-separated) command line, read from the host's /proc. */
export function hostProcesses(): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      found.push({ pid: Number(name), cmdline: readFileSync(`/proc/${name}/cmdline`, 'utf8') });
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Command lines of every host process, arguments joined by spaces. */
export function hostCommandLines(): string[] {
  return hostProcesses().map((p) => p.cmdline.replaceAll('\0', ' '));
}

/** Host processes (not zombies) whose real uid is `uid`. */
export function hostProcessesOf(uid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      if (/^State:\s+Z/m.test(status)) continue;
      if (new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(status)) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/**
 * Host pids of the live (not zombie) processes in the pid namespace `namespace` (`pid:[<inode>]`, as
 * `readlink /proc/self/ns/pid` names it inside a sandbox: namespace inodes are the same everywhere).
 */
export function processesInPidNamespace(namespace: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/ns/pid`) !== namespace) continue;
      // A zombie holds nothing but its pid until its parent (by then the host's init) reaps it.
      if (!/^State:\s+Z/m.test(readFileSync(`/proc/${name}/status`, 'utf8'))) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** Polls `check` until it holds or `ms` pass; returns its last value. */
export async function eventually(check: () => boolean, ms = 2_000): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (check()) return true;
    if (Date.now() > until) return false;
    await sleep(25);
  }
}

/** A host directory the sandbox user (host uid 65534 when the tests run as root) can read or write. */
export function hostDir(prefix: string, mode: number): { path: string; [Symbol.dispose](): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(path, mode);
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

/** Writes a world-readable secret file (so only the sandbox, not permissions, keeps it out). */
export function writeSecret(dir: string, name: string, secret: string): string {
  const file = join(dir, name);
  writeFileSync(file, secret, { mode: 0o644 });
  chmodSync(file, 0o644);
  return file;
}

/** A marker unique to this run, so output can only contain it if the attempt ran. */
export function marker(label: string): string {
  return `${label}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}
