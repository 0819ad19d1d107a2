import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runNatsConfig } from '../helpers/nats-config.ts';
import { afterAll, describe, expect, it } from 'vitest';

/** `troupe nats-config`: the file nats-server accepts, and the environment of each role. */
const dir = mkdtempSync(path.join(tmpdir(), 'troupe-natsconf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = runNatsConfig;

describe('troupe nats-config', () => {
  it('writes a configuration nats-server accepts and prints each role its credentials', async () => {
    const file = path.join(dir, 'conf', 'troupe-nats.conf');
    const { code, out } = await run({ file, port: '4333', 'store-dir': path.join(dir, 'store') });
    expect(code).toBe(0);
    expect(existsSync(file)).toBe(true);
    for (const role of ['hosts', 'submitters', 'approvers']) {
      const m = new RegExp(`# ${role}: .*\\nNATS_URL=nats://127\\.0\\.0\\.1:4333 NATS_USER=troupe-${role} NATS_PASSWORD=(\\S+)`).exec(out);
      expect(m, out).not.toBeNull();
      expect(readFileSync(file, 'utf8')).toContain(`password: "${m![1]}"`);
    }
    // `-t` parses the configuration and exits: it must be one nats-server 2.9 accepts.
    expect(() => execFileSync('nats-server', ['-c', file, '-t'], { stdio: 'pipe' })).not.toThrow();
  });

  it('refuses a port that is not one', async () => {
    await expect(run({ file: path.join(dir, 'x.conf'), port: 'http' })).rejects.toThrow(/--port must be a port number/);
  });
});
