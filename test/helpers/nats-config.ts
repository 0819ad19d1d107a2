import { vi } from 'vitest';
import { natsConfigCommand } from '../../cli/commands/nats-config.ts';

/** Runs `troupe nats-config` in this process with these options; its exit code and what it printed. */
export async function runNatsConfig(values: Record<string, string | undefined>): Promise<{ code: number; out: string }> {
  let out = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    return { code: await natsConfigCommand.run({ values, positionals: [] }), out };
  } finally {
    write.mockRestore();
  }
}
