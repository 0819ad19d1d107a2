import { isolatedTools, ToolWorker } from '../../actors/tool-worker.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { connectClient } from '../connect.ts';
import { loadAgents } from '../load-agents.ts';
import { createLogger } from '../logger.ts';
import type { Command } from '../main.ts';
import { untilSignal } from '../signals.ts';
import { configFor } from './options.ts';

export const workerCommand: Command = {
  summary: 'run a tool worker: answers calls of isolated (thread, bwrap) tools; start several to scale',
  usage: 'troupe worker [--tools a,b] [--config file]',
  options: { tools: { type: 'string' } },
  async run({ values }) {
    const loaded = await configFor(values);
    const logger = createLogger(loaded.config);
    const names = typeof values.tools === 'string' ? values.tools.split(',').map((t) => t.trim()).filter(Boolean) : undefined;
    let tools;
    try {
      tools = isolatedTools(await loadAgents(loaded.agentModules), names);
    } catch (err) {
      if (err instanceof TypeError) throw new TerminalError(ErrorCode.invalidConfig, err.message);
      throw err;
    }
    if (!tools.length) throw new TerminalError(ErrorCode.invalidConfig, 'no agent has an isolated tool (isolation "thread" or "bwrap"): hosts run inline tools themselves, so there is nothing for a worker to do');
    const nc = await connectClient(loaded, `${loaded.config.nats.name}-worker`, 'hosts');
    const worker = new ToolWorker({ nc, config: loaded.config, tools, logger });
    await worker.start();
    process.stdout.write(`worker ${worker.workerId} serves ${worker.toolNames.join(', ')}; Ctrl-C to stop\n`);
    await untilSignal(logger, 'shutting down: finishing running tool calls');
    await worker.close();
    await nc.drain().catch(() => {});
    logger.flush();
    return 0;
  },
};
