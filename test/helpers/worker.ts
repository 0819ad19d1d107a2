import pino from 'pino';
import { ToolWorker, type ToolWorkerOptions } from '../../actors/tool-worker.ts';
import { compileConfig } from '../../config/load.ts';
import type { TroupeConfigInput } from '../../config/schema.ts';
import { connectNats } from '../../runtime/connection.ts';
import type { Tool } from '../../sandbox/tool.ts';

/** A started tool worker with its own connection; `stop()` drains it and disconnects. Idempotent. */
export type TestWorker = ToolWorker & { nc: Awaited<ReturnType<typeof connectNats>>; stop(): Promise<void> };

/**
 * A tool worker in this process against a test server, serving `tools` (isolated tools whose
 * module a worker thread can import). Pass the same config input as the host's (at least the
 * same `prefix`), so that both use the same subjects and buckets.
 */
export async function startWorker(
  url: string,
  tools: Tool<any, any>[],
  config: TroupeConfigInput = {},
  extra: Pick<ToolWorkerOptions, 'workerId' | 'faults' | 'clock'> = {},
): Promise<TestWorker> {
  const nc = await connectNats({ servers: [url], name: 'troupe-test-worker' });
  const worker = new ToolWorker({
    nc,
    config: compileConfig(config),
    tools,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    ...extra,
  });
  try {
    await worker.start();
  } catch (err) {
    await worker.close(0);
    await nc.close();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return Object.assign(worker, {
    nc,
    stop() {
      stopping ??= (async () => {
        await worker.close();
        await nc.close();
      })();
      return stopping;
    },
  });
}
