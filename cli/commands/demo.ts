import { loadAgents } from '../load-agents.ts';
import { createLogger } from '../logger.ts';
import type { Command } from '../main.ts';
import { formatEvent } from '../print-events.ts';
import { startStack } from '../stack.ts';
import { submitTask } from './submit.ts';
import { subjects } from '../../runtime/subjects.ts';
import { connectNats } from '../../runtime/connection.ts';
import { configFor } from './options.ts';

export const demoCommand: Command = {
  summary: 'the whole path once: start troupe, submit the example task, stream it, print the result, stop',
  usage: 'troupe demo [--agent name] [--input json]',
  options: { agent: { type: 'string' }, input: { type: 'string' } },
  async run({ values }) {
    const loaded = await configFor(values);
    const logger = createLogger({ ...loaded.config, log: { ...loaded.config.log, level: loaded.config.log.level === 'info' ? 'warn' : loaded.config.log.level } });
    const agents = await loadAgents(loaded.agentModules);
    const agent = typeof values.agent === 'string' ? agents.find((a) => a.name === values.agent) : agents.find((a) => a.exampleInput !== undefined);
    if (!agent) throw new Error(values.agent ? `no agent "${values.agent}" in the config` : 'no agent with an exampleInput is registered');
    const input = typeof values.input === 'string' ? JSON.parse(values.input) : agent.exampleInput;
    const out = process.stdout;
    out.write('troupe demo\n');
    const stack = await startStack(loaded, logger, { embedded: true });
    out.write(`  nats      ${stack.url}${stack.server ? ` (embedded, store ${stack.server.storeDir})` : ''}\n`);
    out.write(`  model     ${stack.model.provider === 'simulator' ? `bundled simulator at ${stack.model.simulator!.url} (no ANTHROPIC_API_KEY)` : 'Anthropic API'}\n`);
    out.write(`  agent     ${agent.name}: ${agent.description}\n`);
    out.write(`  input     ${JSON.stringify(input)}\n\n`);
    const client = await connectNats({ servers: [stack.url], name: 'troupe-demo-client' });
    try {
      out.write(`publishing to ${subjects(loaded.config.prefix).task(agent.name)} ...\n`);
      const result = await submitTask(client, subjects(loaded.config.prefix), agent.name, { input }, {
        wait: true,
        timeoutMs: 120_000,
        onEvent: (e) => {
          const line = formatEvent(e);
          if (line) out.write(`  ${new Date(e.at).toISOString().slice(11, 23)}  ${line}\n`);
        },
      });
      if ('error' in result.verdict) {
        out.write(`rejected: ${result.verdict.error.code}: ${result.verdict.error.message}\n`);
        return 1;
      }
      const last = result.events.at(-1);
      out.write('\n');
      if (last?.type === 'done') {
        out.write(`result of task ${result.verdict.taskId}:\n\n  ${String(typeof last.output === 'string' ? last.output : JSON.stringify(last.output)).replace(/\n/g, '\n  ')}\n\n`);
        out.write(`see it again with: npx troupe status ${result.verdict.taskId}   (while \`npx troupe up\` runs)\n`);
        return 0;
      }
      out.write(`task ${result.verdict.taskId} did not finish\n`);
      return 1;
    } finally {
      await client.close();
      await stack.close();
    }
  },
};
