/** How a task machine ends: its final state's output is one of these. */
export type MachineOutcome =
  | { status: 'done'; output: unknown }
  | { status: 'failed'; error: { code: string; message: string } };

export const outcome = {
  done: (output: unknown): MachineOutcome => ({ status: 'done', output }),
  failed: (code: string, message: string): MachineOutcome => ({ status: 'failed', error: { code, message } }),
};

/** A thrown value as `{code, message}`, without importing any error classes into machines. */
export function errorOf(value: unknown): { code: string; message: string } {
  if (typeof value === 'object' && value !== null) {
    const v = value as { code?: unknown; message?: unknown };
    if (typeof v.code === 'string' && typeof v.message === 'string') return { code: v.code, message: v.message };
    if (typeof v.message === 'string') return { code: 'internal', message: v.message };
  }
  return { code: 'internal', message: String(value) };
}
