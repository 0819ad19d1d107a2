/**
 * Resource limits of one sandboxed run: their schema, documented defaults, and how they become
 * kernel rlimits (applied with util-linux `prlimit` inside the sandbox).
 */
import { z } from 'zod';
import { SandboxSpecError } from './errors.ts';

const MiB = 1024 * 1024;

/**
 * Virtual address space granted on top of `memoryBytes`. Runtimes reserve far more address space than
 * they touch (Node/V8 reserves ~700 MiB at start-up), so RLIMIT_AS cannot be the memory limit itself;
 * it is a backstop, and RLIMIT_DATA (private writable memory: heap, buffers, anonymous mmap) is the
 * limit that bites.
 */
export const ADDRESS_SPACE_HEADROOM_BYTES = 1024 * MiB;

const positiveInt = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** Schema of user-supplied limits; every field is optional and defaults as documented below. */
export const sandboxLimitsSchema = z
  .strictObject({
    memoryBytes: positiveInt.min(16 * MiB),
    cpuSeconds: positiveInt,
    processes: positiveInt,
    fileSizeBytes: positiveInt,
    openFiles: positiveInt.min(8),
    wallClockMs: positiveInt,
    outputBytes: positiveInt,
    scratchBytes: positiveInt,
  })
  .partial();

/** Limits of one sandboxed run, all enforced outside the sandboxed code's control. */
export interface SandboxLimits {
  /**
   * Private writable memory of each process (RLIMIT_DATA); address space is capped at this plus
   * {@link ADDRESS_SPACE_HEADROOM_BYTES} (RLIMIT_AS). Allocations past it fail. It is the code's
   * memory: what its runtime reserves for itself (a sandboxed Node's thread stacks) is granted on top
   * (see {@link RuntimeReserve}).
   * @default 268435456 (256 MiB)
   */
  memoryBytes: number;
  /** CPU time of each process (RLIMIT_CPU): SIGXCPU at the limit, SIGKILL one second later. @default 10 */
  cpuSeconds: number;
  /**
   * Tasks (processes and threads) of the sandbox user, counted per sandbox (RLIMIT_NPROC in the
   * sandbox's own user namespace). Node needs about 8 for itself. @default 32
   */
  processes: number;
  /** Largest file a process may write (RLIMIT_FSIZE); SIGXFSZ past it. @default 16777216 (16 MiB) */
  fileSizeBytes: number;
  /** Open file descriptors per process (RLIMIT_NOFILE). @default 64 */
  openFiles: number;
  /** Wall-clock time from job hand-over until the whole sandbox is SIGKILLed. @default 10000 */
  wallClockMs: number;
  /** stdout and stderr together; past it reading stops and the sandbox is killed. @default 1048576 (1 MiB) */
  outputBytes: number;
  /** Size of the private tmpfs scratch directory `/tmp` (host memory, so bounded too). @default 67108864 (64 MiB) */
  scratchBytes: number;
}

/** The documented defaults, frozen. */
export const defaultSandboxLimits: Readonly<SandboxLimits> = Object.freeze({
  memoryBytes: 256 * MiB,
  cpuSeconds: 10,
  processes: 32,
  fileSizeBytes: 16 * MiB,
  openFiles: 64,
  wallClockMs: 10_000,
  outputBytes: 1 * MiB,
  scratchBytes: 64 * MiB,
});

/**
 * Validates user limits once and fills in defaults. The result is frozen.
 * @throws SandboxSpecError when a limit is not a positive integer, below its floor, or unknown.
 */
export function compileSandboxLimits(limits?: Partial<SandboxLimits>): Readonly<SandboxLimits> {
  const parsed = sandboxLimitsSchema.safeParse(limits ?? {});
  if (!parsed.success) throw new SandboxSpecError(`invalid sandbox limits: ${z.prettifyError(parsed.error)}`);
  const defined = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
  return Object.freeze({ ...defaultSandboxLimits, ...defined });
}

/** Host path of util-linux `prlimit`, also visible inside the sandbox through the `/usr` bind. */
export const PRLIMIT_PATH = '/usr/bin/prlimit';

/**
 * What a command's runtime needs for itself, besides the memory its code may use: set by whoever
 * knows the runtime (see `nodeSandboxSpec`), never by a tool.
 */
export interface RuntimeReserve {
  /**
   * Private writable memory the runtime reserves for itself without using it (thread stacks are
   * mapped whole at thread start), granted on top of `memoryBytes` in RLIMIT_DATA and RLIMIT_AS so
   * that it is not charged to the code. @default 0
   */
  reservedBytes: number;
  /**
   * RLIMIT_STACK: the main thread's stack and the default size of every other thread's stack.
   * @default inherited (8 MiB on most systems)
   */
  stackBytes?: number | undefined;
}

/**
 * The `prlimit` prefix that applies `limits` to the sandboxed command. It runs inside the sandbox
 * so that RLIMIT_NPROC is counted in the sandbox's own user namespace (per sandbox, not per host uid),
 * and it execs the command, so it adds no process. Core dumps are disabled. `runtime`'s reservation
 * is added to the data and address-space limits, and its stack size, when given, becomes RLIMIT_STACK.
 */
export function prlimitPrefix(limits: Readonly<SandboxLimits>, runtime: Readonly<RuntimeReserve> = { reservedBytes: 0 }): string[] {
  const data = limits.memoryBytes + runtime.reservedBytes;
  return [
    PRLIMIT_PATH,
    `--data=${data}`,
    `--as=${data + ADDRESS_SPACE_HEADROOM_BYTES}`,
    ...(runtime.stackBytes !== undefined ? [`--stack=${runtime.stackBytes}`] : []),
    `--cpu=${limits.cpuSeconds}:${limits.cpuSeconds + 1}`,
    `--nproc=${limits.processes}`,
    `--fsize=${limits.fileSizeBytes}`,
    `--nofile=${limits.openFiles}`,
    '--core=0',
    '--',
  ];
}
