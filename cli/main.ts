import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TroupeError } from '../common/errors.ts';
import { agentsCommand } from './commands/agents.ts';
import { approvalsCommand, approveCommand, approverKeyCommand } from './commands/approve.ts';
import { approverCommand } from './commands/approver.ts';
import { natsConfigCommand } from './commands/nats-config.ts';
import { auditCommand } from './commands/audit.ts';
import { breakersCommand } from './commands/breakers.ts';
import { cancelCommand } from './commands/cancel.ts';
import { demoCommand } from './commands/demo.ts';
import { evalCommand } from './commands/eval.ts';
import { hostCommand, upCommand } from './commands/up.ts';
import { simulatorCommand } from './commands/simulator.ts';
import { statusCommand, tasksCommand } from './commands/status.ts';
import { sendCommand } from './commands/send.ts';
import { submitCommand } from './commands/submit.ts';
import { replayCommand } from './commands/replay.ts';
import { traceCommand } from './commands/trace.ts';
import { workerCommand } from './commands/worker.ts';

/** A command: parsed flags and positionals in, exit code out. */
export interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(args: { values: Record<string, string | boolean | undefined>; positionals: string[] }): Promise<number>;
}

const commands: Record<string, Command> = {
  up: upCommand,
  host: hostCommand,
  worker: workerCommand,
  submit: submitCommand,
  status: statusCommand,
  replay: replayCommand,
  trace: traceCommand,
  audit: auditCommand,
  cancel: cancelCommand,
  send: sendCommand,
  tasks: tasksCommand,
  agents: agentsCommand,
  breakers: breakersCommand,
  approvals: approvalsCommand,
  approve: approveCommand,
  'approver-key': approverKeyCommand,
  approver: approverCommand,
  'nats-config': natsConfigCommand,
  demo: demoCommand,
  eval: evalCommand,
  simulator: simulatorCommand,
};

const common = { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

function help(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  return [
    'troupe: a durable runtime for LLM agents on NATS JetStream',
    '',
    'usage: troupe <command> [options]   (--config <file> selects troupe.config.json/.ts)',
    '',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'troupe <command> --help shows the command\'s options.',
  ].join('\n');
}

/** Runs the `troupe` command line; returns the exit code. Errors are printed, never thrown. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name) {
    process.stderr.write(`${help()}\n`);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`troupe: unknown command "${name}"\n\n${help()}\n`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...common, ...command.options }, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`troupe ${name}: ${(err as Error).message}\nusage: ${command.usage}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`usage: ${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] });
  } catch (err) {
    const e = err as Error;
    const code = err instanceof TroupeError ? ` [${err.code}]` : '';
    process.stderr.write(`troupe ${name}: ${e.message}${code}\n`);
    if (!(err instanceof TroupeError) && process.env.TROUPE_DEBUG) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}
