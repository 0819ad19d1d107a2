import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Writes `text` to `file` readable and writable by its owner only (mode 600), creating parent
 * directories. The text is never readable by others, not even for a moment and not even when
 * `file` already existed with a wider mode: it goes to a new file created with mode 600, which
 * then replaces `file`.
 */
export function writePrivateFile(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  // `wx`: fail rather than write into a file someone else created, whose mode would be kept.
  writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
