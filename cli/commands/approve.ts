import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createUser } from '@nats-io/nkeys';
import { runInteractiveApprover } from '../../human/terminal/interactive-approve.ts';
import { approverKeyFile, loadApproverKey } from '../approver-key.ts';
import { ApproverClient, pendingRequests } from '../../human/approver-client.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { snapshotEnvelopeSchema } from '../../runtime/wire.ts';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';


export const approverKeyCommand: Command = {
  summary: 'create an approver key pair (ed25519 nkey) and print the public key for the config',
  usage: 'troupe approver-key new [--key file] [--name "Ada"]',
  options: { key: { type: 'string' }, name: { type: 'string' } },
  async run({ values, positionals }) {
    if (positionals[0] !== 'new') throw new TerminalError(ErrorCode.invalidInput, 'usage: troupe approver-key new [--key file]');
    const file = approverKeyFile(values);
    if (existsSync(file)) throw new TerminalError(ErrorCode.invalidInput, `${file} already exists; move it away or choose another --key`);
    const pair = createUser();
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `${new TextDecoder().decode(pair.getSeed())}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    const entry = { name: typeof values.name === 'string' ? values.name : 'your name', publicKey: pair.getPublicKey() };
    process.stdout.write(`secret key written to ${file} (mode 600; keep it private)\npublic key: ${pair.getPublicKey()}\n\nadd to troupe.config.json:\n  "approvers": [${JSON.stringify(entry)}]\n`);
    return 0;
  },
};

export const approvalsCommand: Command = {
  summary: 'list the requests waiting for an approver, oldest first',
  usage: 'troupe approvals [--json]',
  options: { json: { type: 'boolean' } },
  async run({ values }) {
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-approvals', 'observers');
    try {
      const bucket = makeSubjects(loaded.config.prefix).buckets.snapshots;
      const waiting = await pendingRequests(new JsonKv(await new Kvm(jetstream(nc)).open(bucket), bucket, snapshotEnvelopeSchema));
      if (values.json) {
        for (const p of waiting) process.stdout.write(`${JSON.stringify(p)}\n`);
        return 0;
      }
      if (!waiting.length) process.stdout.write('nothing is waiting for an approver\n');
      for (const p of waiting) {
        const mins = Math.round((Date.now() - p.createdAt) / 60_000);
        const what =
          p.kind === 'limit'
            ? `approve adds ${p.ask.amount} to ${p.limit.name}: troupe approve ${p.requestId} --approve [--grant N]`
            : `${p.tool.name} (${p.tool.reversibility}) with ${JSON.stringify(p.args)}: troupe approve ${p.requestId} --approve, or \`troupe approve\` to edit`;
        process.stdout.write(
          `${p.requestId}\n  task ${p.taskId} (agent ${p.agent}), waiting ${mins} min\n  ${p.reason}\n  spent so far: $${p.spent.usd.toFixed(4)}, ${p.spent.tokens} tokens, ${p.spent.steps} steps\n  ${what}\n\n`,
        );
      }
      return 0;
    } finally {
      await nc.close();
    }
  },
};

export const approveCommand: Command = {
  summary: 'decide on waiting requests: interactively, or one request with --approve|--reject',
  usage: 'troupe approve [--key file]   |   troupe approve <requestId|taskId> --approve|--reject [--grant amount] [--reason text] [--key file]',
  options: { approve: { type: 'boolean' }, reject: { type: 'boolean' }, grant: { type: 'string' }, reason: { type: 'string' }, key: { type: 'string' } },
  async run({ values, positionals }) {
    const [ref] = positionals;
    if (!ref && !values.approve && !values.reject) return interactive(values);
    if (!ref || values.approve === values.reject) throw new TerminalError(ErrorCode.invalidInput, 'usage: troupe approve <requestId|taskId> --approve|--reject [--grant amount] [--reason text]');
    const key = loadApproverKey(values);
    const grant = values.grant === undefined ? undefined : Number(values.grant);
    if (grant !== undefined && !(grant > 0)) throw new TerminalError(ErrorCode.invalidInput, `--grant must be a positive number (got ${values.grant})`);
    const taskId = ref.split('.')[0]!;
    const loaded = await configFor(values);
    const client = await ApproverClient.connect(await connectClient(loaded, 'troupe-approver', 'approvers'), { prefix: loaded.config.prefix, key });
    try {
      const request = (await client.pending()).find((r) => r.taskId === taskId);
      if (!request) throw new TerminalError(ErrorCode.notFound, `task ${taskId} is not waiting for a decision (see \`troupe approvals\`)`);
      if (ref !== taskId && ref !== request.requestId) throw new TerminalError(ErrorCode.notFound, `request ${ref} is not pending; task ${taskId} waits on ${request.requestId}`);
      const reason = typeof values.reason === 'string' ? { reason: values.reason } : {};
      const result = await client.decide(request, values.approve ? { verdict: 'approve', ...(grant !== undefined ? { grant } : {}), ...reason } : { verdict: 'reject', ...reason });
      if (result.ok && result.awaiting) {
        process.stdout.write(`approval counted: ${result.awaiting} more approver(s) needed before task ${taskId} continues\n`);
        return 0;
      }
      if (result.ok) {
        process.stdout.write(`${values.approve ? 'approved' : 'rejected'}: task ${taskId} continues on the next free host\n`);
        return 0;
      }
      process.stderr.write(`refused: ${result.error.code}: ${result.error.message}\n`);
      return 1;
    } finally {
      await client.close();
    }
  },
};

/** `troupe approve` with no arguments: the interactive terminal approver. */
async function interactive(values: Record<string, string | boolean | undefined>): Promise<number> {
  const key = loadApproverKey(values);
  const loaded = await configFor(values);
  const client = await ApproverClient.connect(await connectClient(loaded, 'troupe-approver', 'approvers'), { prefix: loaded.config.prefix, key });
  try {
    process.stdout.write(`approving as ${client.publicKey}\n`);
    await runInteractiveApprover({ client, input: process.stdin, output: process.stdout });
    return 0;
  } finally {
    await client.close();
  }
}
