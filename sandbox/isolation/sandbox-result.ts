/**
 * What a sandboxed run reports, and the judgement of that report into a typed failure.
 */
import { constants } from 'node:os';
import {
  SandboxCpuLimitError,
  SandboxExitError,
  SandboxMemoryLimitError,
  SandboxOutputLimitError,
  SandboxTimeoutError,
  type SandboxError,
} from './errors.ts';
import type { SandboxLimits } from './limits.ts';

/** The observable end of one sandboxed run. */
export interface SandboxResult {
  /**
   * Exit status of the sandboxed command; `null` when it was ended by a signal, or when the run was
   * settled on its completion lines before the exit status was in (then `signal` is `null` too).
   */
  exitCode: number | null;
  /** Name of the signal that ended the command (`'SIGKILL'`, `'SIGXCPU'`, ...), else `null`. */
  signal: string | null;
  /** Standard output, decoded as UTF-8, at most `limits.outputBytes` together with stderr. */
  stdout: string;
  /** Standard error, decoded as UTF-8, at most `limits.outputBytes` together with stdout. */
  stderr: string;
  /** The run was killed because it outlived `limits.wallClockMs` (or its abort signal fired). */
  timedOut: boolean;
  /** Output went past `limits.outputBytes`: reading stopped, the run was killed, output is cut. */
  outputTruncated: boolean;
  /** From the moment the job was handed to the sandbox until the sandbox was gone. */
  durationMs: number;
}

const signalNames = new Map<number, string>(
  Object.entries(constants.signals).map(([name, number]) => [number, name]),
);

/**
 * bubblewrap reports a command killed by signal `n` as exit status `128 + n` (its reaper is pid 1 of
 * the sandbox). This turns that convention back into a signal name, which is what callers judge on.
 */
export function decodeBwrapStatus(code: number | null, signal: NodeJS.Signals | null): Pick<SandboxResult, 'exitCode' | 'signal'> {
  if (signal !== null) return { exitCode: null, signal };
  if (code !== null && code > 128) {
    const name = signalNames.get(code - 128);
    if (name !== undefined) return { exitCode: null, signal: name };
  }
  return { exitCode: code, signal: null };
}

/** Tail of stderr that memory-exhaustion messages are searched in (they come last). */
const STDERR_TAIL = 8 * 1024;

const OUT_OF_MEMORY =
  /JavaScript heap out of memory|Reached heap limit|Fatal process out of memory|Array buffer allocation failed|Cannot allocate memory|std::bad_alloc|MemoryError|out of memory/i;

/** Whether a failure message is the runtime reporting that an allocation failed (Node, C, C++, Python). */
export function looksOutOfMemory(text: string): boolean {
  return OUT_OF_MEMORY.test(text.slice(-STDERR_TAIL));
}

/**
 * Judges a finished run: `undefined` when the command ran to a zero exit within every limit, else the
 * typed error that says why not. Precedence: wall clock, output, CPU, memory, then plain exit status.
 * Memory exhaustion is recognised from the failure itself (a fatal allocation message on stderr), since
 * an rlimit makes allocations fail rather than sending a distinctive signal; a death without such a
 * message (a SIGSEGV, say) is a crash, never guessed to be the memory limit. For that to hold, a
 * runtime must report its own exhaustion before the kernel refuses it memory: a Node sandbox's heap
 * limit sits well below its data limit for that reason (see `nodeSandboxSpec`). A run settled on its
 * completion lines has no exit status and so counts as failed here; whoever settles early judges the
 * command's own report instead (as the JavaScript runner does).
 */
export function sandboxFailure(result: SandboxResult, limits: Pick<SandboxLimits, 'wallClockMs' | 'outputBytes' | 'cpuSeconds' | 'memoryBytes'>): SandboxError | undefined {
  if (result.timedOut) return new SandboxTimeoutError(limits.wallClockMs, result);
  if (result.outputTruncated) return new SandboxOutputLimitError(limits.outputBytes, result);
  if (result.signal === 'SIGXCPU') return new SandboxCpuLimitError(limits.cpuSeconds, result);
  const failed = result.exitCode !== 0 || result.signal !== null;
  if (!failed) return undefined;
  if (looksOutOfMemory(result.stderr)) return new SandboxMemoryLimitError(limits.memoryBytes, result);
  return new SandboxExitError(result);
}
