import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** `troupe up --ui`: the whole stack plus the approver page with a development key. */
describe('troupe up --ui', () => {
  it('serves the approver page next to the stack, says the key is for development, and stops on Ctrl-C', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'troupe-up-ui-'));
    const config = path.join(dir, 'troupe.config.json');
    writeFileSync(config, JSON.stringify({ agents: [path.join(ROOT, 'examples/support-desk/agent.ts')], embedded: { storeDir: path.join(dir, 'nats') }, log: { pretty: false } }));
    const env: Record<string, string | undefined> = { ...process.env, LOG_LEVEL: 'info' };
    delete env.NATS_URL;
    delete env.ANTHROPIC_API_KEY;
    const child = spawn(process.execPath, ['bin/troupe.js', 'up', '--ui', '--ui-port', '0', '--config', config], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const until = Date.now() + 30_000;
      while (!/approver page: (http:\S+)/.test(stdout) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      const url = /approver page: (http:\S+?)\/?$/m.exec(stdout)?.[1];
      expect(url, `stdout: ${stdout}\nstderr: ${stderr}`).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      // The warning is a log line, written a moment after the URL on another stream.
      while (!stderr.includes('DEVELOPMENT key') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(stderr).toContain('DEVELOPMENT key');
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      const cookie = page.headers.get('set-cookie')!.split(';')[0]!;
      const requests = await fetch(`${url}/api/requests`, { headers: { cookie } });
      expect(requests.status).toBe(200);
      expect(await requests.json()).toEqual([]);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(stderr).toContain('host stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});
