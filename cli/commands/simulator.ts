import { startSimulator } from '../../simulator/index.ts';
import type { Command } from '../main.ts';

export const simulatorCommand: Command = {
  summary: 'run the bundled Anthropic-compatible model simulator on its own (for your tests)',
  usage: 'troupe simulator [--scenario file.json] [--port N]',
  options: { scenario: { type: 'string' }, port: { type: 'string' } },
  async run({ values }) {
    const sim = await startSimulator({
      ...(typeof values.scenario === 'string' ? { scenario: values.scenario } : {}),
      port: Number(values.port ?? 0),
    });
    process.stdout.write(`simulator listening on ${sim.url}\nuse it with: ANTHROPIC_BASE_URL=${sim.url} ANTHROPIC_API_KEY=any\nstats: ${sim.url}/_simulator/stats\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await sim.close();
    return 0;
  },
};
