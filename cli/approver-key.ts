import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fromSeed, type KeyPair } from '@nats-io/nkeys';
import { ErrorCode, TerminalError } from '../common/errors.ts';

/** Where an approver's key lives unless `--key` or `TROUPE_APPROVER_KEY` says otherwise. */
export const DEFAULT_KEY_FILE = path.join(homedir(), '.config', 'troupe', 'approver.nk');

/** The key file a command uses: `--key`, else `TROUPE_APPROVER_KEY`, else the default. */
export function approverKeyFile(values: Record<string, unknown>): string {
  return typeof values.key === 'string' ? values.key : (process.env.TROUPE_APPROVER_KEY ?? DEFAULT_KEY_FILE);
}

/** Loads the approver's key pair; it stays in this process and signs decisions here. */
export function loadApproverKey(values: Record<string, unknown>): KeyPair {
  const file = approverKeyFile(values);
  if (!existsSync(file)) throw new TerminalError(ErrorCode.notFound, `no approver key at ${file}: create one with \`troupe approver-key new\`, or pass --key`);
  return fromSeed(new TextEncoder().encode(readFileSync(file, 'utf8').trim()));
}
