/**
 * A host in its own process for the intake fuzz: runs the `echo` agent (its scripted model answers
 * `echo: <text>`), so the test can check that the process that took a thousand hostile messages is
 * the one that is still up. Environment: NATS_URL, PREFIX, MAX_TASK_BYTES, MARK_DIR (gets `ready`,
 * holding the host id, once the host is started).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { Host } from '../../actors/host.ts';
import { compileConfig } from '../../config/load.ts';
import { connectNats } from '../../runtime/connection.ts';
import { echoAgent, echoModel } from '../../chaos/echo-agent.ts';

const env = process.env;
const nc = await connectNats({ servers: [env.NATS_URL!], name: 'fuzz-host' });
const host = new Host({
  nc,
  config: compileConfig({ prefix: env.PREFIX ?? 'troupe', host: { maxTaskBytes: Number(env.MAX_TASK_BYTES ?? 256 * 1024) } }),
  agents: [echoAgent],
  model: echoModel,
  logger: pino({ level: env.TEST_LOG_LEVEL ?? 'silent' }),
});
await host.start();
writeFileSync(path.join(env.MARK_DIR!, 'ready'), host.hostId);
