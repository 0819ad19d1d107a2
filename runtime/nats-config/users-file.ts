import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { natsCredentialsSchema, type NatsCredentials, type NatsRole } from './nats-config.ts';
import { writePrivateFile } from './private-file.ts';

/**
 * The file in which a secured embedded server (`troupe up --secure`) leaves each role's user and
 * password for the commands run next to it. Versioned so a later format can still read this one.
 */
export const natsUsersFileSchema = z.object({
  v: z.literal(1),
  users: z.object({
    hosts: natsCredentialsSchema,
    submitters: natsCredentialsSchema,
    approvers: natsCredentialsSchema,
    observers: natsCredentialsSchema,
  }),
});

/** Each role's user and password. */
export type NatsUsers = Record<NatsRole, NatsCredentials>;

/** Writes `users` to `file`, mode 600 (see `writePrivateFile`). */
export function writeNatsUsersFile(file: string, users: NatsUsers): void {
  const record: z.infer<typeof natsUsersFileSchema> = { v: 1, users };
  writePrivateFile(file, `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * The users in `file`, or undefined if there is no such file.
 * @throws TerminalError if the file is there but is not a users file.
 */
export function readNatsUsersFile(file: string): NatsUsers | undefined {
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new TerminalError(ErrorCode.invalidConfig, `${file} is not valid JSON; restart \`troupe up --secure\` to write it again`, { cause });
  }
  const result = natsUsersFileSchema.safeParse(parsed);
  if (!result.success) throw new TerminalError(ErrorCode.invalidConfig, `${file} is not a troupe users file; restart \`troupe up --secure\` to write it again`);
  return result.data.users;
}
