import path from 'node:path';
import { createLogger } from '../logger.ts';
import { startDevApprover, withDevApprover } from '../dev-approver.ts';
import { untilSignal } from '../signals.ts';
import { startStack } from '../stack.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

/** What `--secure` did, for the terminal: where the users are and what each may do. No secrets. */
function secureModeNotice(usersFile: string): string {
  const shown = path.relative(process.cwd(), usersFile);
  const where = shown.startsWith('..') || path.isAbsolute(shown) ? usersFile : shown;
  return [
    `secure mode: nats-server requires a user; users for hosts, submitters, approvers and observers, with passwords new for this run, written to ${where} (mode 600)`,
    '  submitters may only publish tasks, approvers only decisions, observers only read; this host connects as the hosts user',
    '  troupe submit / status / tasks / approvals / approve / approver in this directory connect with the right user from that file',
    '',
  ].join('\n');
}

/** Runs until SIGINT/SIGTERM, then shuts down gracefully (a second signal forces exit). */
async function runUntilSignal(values: Record<string, string | boolean | undefined>, embedded: boolean): Promise<number> {
  let loaded = await configFor(values);
  const ui = values.ui === true ? withDevApprover(loaded) : undefined;
  if (ui) loaded = ui.loaded;
  const logger = createLogger(loaded.config);
  const stack = await startStack(loaded, logger, { embedded, secure: values.secure === true, inspect: values.inspect === true });
  logger.info({ nats: stack.url, model: stack.model.provider, secure: stack.usersFile !== undefined }, embedded ? 'troupe is up; Ctrl-C to stop' : 'troupe host is running; Ctrl-C to stop');
  if (stack.usersFile) process.stdout.write(secureModeNotice(stack.usersFile));
  if (stack.host.metricsUrl) process.stdout.write(`metrics: ${stack.host.metricsUrl}\n`);
  if (stack.inspector) {
    process.stdout.write(`XState inspector relay: ${stack.inspector.url}${stack.inspector.pageUrl ? `\n  open ${stack.inspector.pageUrl} to watch every task's statecharts live in the Stately inspector (it needs internet access to stately.ai)` : ''}\n`);
  }
  const page = ui ? await startDevApprover(loaded, ui.key, Number(values['ui-port'] ?? 8080), stack.agents) : undefined;
  if (page) {
    process.stdout.write(`approver page: ${page.url}\n`);
    if (page.tasksUrl) process.stdout.write(`task view: ${page.tasksUrl} (every task, its statechart and timeline, live)\n`);
    logger.warn({ url: page.url }, 'the approver page signs with a DEVELOPMENT key made for this run and trusted only by it; in production each approver runs `troupe approver` with their own key');
  }
  await untilSignal(logger, 'shutting down: stopping intake, checkpointing and handing over tasks');
  await page?.close();
  await stack.close();
  logger.flush();
  return 0;
}

export const upCommand: Command = {
  summary: 'run troupe until Ctrl-C: its own nats-server (unless NATS_URL is set; --secure: with per-role users), a host and the model',
  usage: 'troupe up [--secure] [--inspect] [--ui [--ui-port 8080]] [--config file]',
  options: { secure: { type: 'boolean' }, inspect: { type: 'boolean' }, ui: { type: 'boolean' }, 'ui-port': { type: 'string' } },
  run: ({ values }) => runUntilSignal(values, true),
};

export const hostCommand: Command = {
  summary: 'run a host against NATS_URL (production; start several to scale out)',
  usage: 'NATS_URL=nats://... troupe host [--config file]',
  options: {},
  run: ({ values }) => runUntilSignal(values, false),
};
