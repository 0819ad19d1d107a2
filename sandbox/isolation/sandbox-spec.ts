/**
 * What a tool asks the sandbox to run, validated once before anything is spawned.
 */
import { posix } from 'node:path';
import { SandboxSpecError } from './errors.ts';
import { compileSandboxLimits, type RuntimeReserve, type SandboxLimits } from './limits.ts';

/** The private, size-limited tmpfs that is the sandbox's only writable place (besides declared rw binds). */
export const SCRATCH_DIR = '/tmp';

/**
 * The whole environment a sandboxed process starts with, before the spec's own `env`. Nothing is
 * inherited from the host process.
 */
export const baseSandboxEnv: Readonly<Record<string, string>> = Object.freeze({
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: SCRATCH_DIR,
  TMPDIR: SCRATCH_DIR,
  LANG: 'C.UTF-8',
  TZ: 'UTC',
});

/** One command to run in a fresh bwrap sandbox. */
export interface SandboxSpec {
  /** argv inside the sandbox; `command[0]` is an absolute path or a name looked up in the sandbox's PATH. */
  command: readonly string[];
  /** Bytes written to the command's stdin, which is then closed. @default empty */
  stdin?: string | Buffer;
  /**
   * Extra host paths the tool declares, mounted at the same path inside. Absolute, normalised, not `/`,
   * not under `/proc` or `/dev`. When troupe runs as root the sandbox runs as host uid 65534, so these
   * must be readable (ro) or writable (rw) by that uid on the host.
   */
  binds?: { ro?: readonly string[]; rw?: readonly string[] };
  /** Limits; unspecified fields take the defaults of {@link SandboxLimits}. */
  limits?: Partial<SandboxLimits>;
  /** Added to {@link baseSandboxEnv}; the host environment is never inherited. */
  env?: Readonly<Record<string, string>>;
  /** Working directory inside the sandbox; absolute, without `..` segments. @default '/tmp' */
  cwd?: string;
  /**
   * What the command's runtime needs for itself beyond `limits.memoryBytes` (see {@link RuntimeReserve}).
   * @default { reservedBytes: 0 }
   */
  runtime?: Partial<RuntimeReserve>;
}

/** A spec that passed validation; frozen. */
export interface CompiledSandboxSpec {
  readonly command: readonly string[];
  readonly binds: { readonly ro: readonly string[]; readonly rw: readonly string[] };
  readonly limits: Readonly<SandboxLimits>;
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly runtime: Readonly<RuntimeReserve>;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkText(what: string, value: string): void {
  if (value.includes('\0')) throw new SandboxSpecError(`${what} contains a NUL byte`);
}

function checkAbsolute(what: string, path: string): void {
  checkText(what, path);
  if (!path.startsWith('/')) throw new SandboxSpecError(`${what} must be absolute: ${JSON.stringify(path)}`);
  if (path.split('/').includes('..')) throw new SandboxSpecError(`${what} must not contain '..': ${JSON.stringify(path)}`);
  if (posix.normalize(path) !== path && `${posix.normalize(path)}/` !== path) {
    throw new SandboxSpecError(`${what} must be normalised: ${JSON.stringify(path)}`);
  }
}

function checkBind(path: string): string {
  checkAbsolute('bind path', path);
  const normal = posix.normalize(path).replace(/(.)\/$/, '$1');
  if (normal === '/') throw new SandboxSpecError('binding the host root is not allowed');
  for (const reserved of ['/proc', '/dev']) {
    if (normal === reserved || normal.startsWith(`${reserved}/`)) {
      throw new SandboxSpecError(`binding under ${reserved} is not allowed: ${JSON.stringify(path)}`);
    }
  }
  return normal;
}

/** Largest runtime reservation or stack accepted: far more than any runtime needs. */
const MAX_RUNTIME_BYTES = 1024 * 1024 * 1024;

function checkRuntime(runtime: Partial<RuntimeReserve> | undefined): Readonly<RuntimeReserve> {
  const reservedBytes = runtime?.reservedBytes ?? 0;
  const stackBytes = runtime?.stackBytes;
  for (const [what, value, min] of [['runtime.reservedBytes', reservedBytes, 0], ['runtime.stackBytes', stackBytes ?? 65_536, 65_536]] as const) {
    if (!Number.isInteger(value) || value < min || value > MAX_RUNTIME_BYTES) {
      throw new SandboxSpecError(`${what} must be an integer from ${min} to ${MAX_RUNTIME_BYTES}, got ${String(value)}`);
    }
  }
  return Object.freeze({ reservedBytes, stackBytes });
}

/**
 * Validates a spec and freezes it, filling in defaults.
 * @throws SandboxSpecError for an empty command, a relative or `..` path, a bad env name, bad limits or
 *   a bad runtime reservation.
 */
export function compileSandboxSpec(spec: SandboxSpec): CompiledSandboxSpec {
  if (spec.command.length === 0 || spec.command[0] === '') throw new SandboxSpecError('command must not be empty');
  for (const arg of spec.command) checkText('command argument', arg);
  const cwd = spec.cwd ?? SCRATCH_DIR;
  checkAbsolute('cwd', cwd);
  const env: Record<string, string> = { ...baseSandboxEnv };
  for (const [name, value] of Object.entries(spec.env ?? {})) {
    if (!ENV_NAME.test(name)) throw new SandboxSpecError(`invalid environment variable name: ${JSON.stringify(name)}`);
    checkText(`environment variable ${name}`, value);
    env[name] = value;
  }
  return Object.freeze({
    command: Object.freeze([...spec.command]),
    binds: Object.freeze({
      ro: Object.freeze((spec.binds?.ro ?? []).map(checkBind)),
      rw: Object.freeze((spec.binds?.rw ?? []).map(checkBind)),
    }),
    limits: compileSandboxLimits(spec.limits),
    env: Object.freeze(env),
    cwd,
    runtime: checkRuntime(spec.runtime),
  });
}
