import { z } from 'zod';
import { loadAgents } from '../load-agents.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

export const agentsCommand: Command = {
  summary: 'list the agents a host here would run, with their input schema and an example',
  usage: 'troupe agents [--json]',
  options: { json: { type: 'boolean' } },
  async run({ values }) {
    const loaded = await configFor(values);
    const agents = await loadAgents(loaded.agentModules);
    const described = agents.map((a) => ({
      name: a.name,
      description: a.description,
      version: a.version,
      subject: `${loaded.config.prefix}.tasks.${a.name}`,
      tools: [...a.tools.keys()],
      inputSchema: z.toJSONSchema(a.input, { io: 'input' }),
      exampleInput: a.exampleInput ?? null,
    }));
    if (values.json) {
      process.stdout.write(`${JSON.stringify(described, null, 2)}\n`);
      return 0;
    }
    if (described.length === 0) {
      process.stdout.write(`no agents registered${loaded.file ? ` in ${loaded.file}` : ' (no troupe.config.json here)'}; list agent modules under "agents"\n`);
      return 0;
    }
    for (const a of described) {
      process.stdout.write(`${a.name}  (version ${a.version}, subject ${a.subject})\n  ${a.description}\n`);
      if (a.tools.length) process.stdout.write(`  tools: ${a.tools.join(', ')}\n`);
      process.stdout.write(`  input schema: ${JSON.stringify(a.inputSchema)}\n`);
      if (a.exampleInput !== null) process.stdout.write(`  example: troupe submit ${a.name} --input '${JSON.stringify(a.exampleInput)}' --wait\n`);
      process.stdout.write('\n');
    }
    return 0;
  },
};
