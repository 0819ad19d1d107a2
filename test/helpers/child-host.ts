import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

/** A host process started from a fixture script; kill it like a crash would. */
export interface ChildHost {
  proc: ChildProcess;
  markDir: string;
  /** Resolves when the fixture left the marker file `name`; returns its content. */
  waitForMark(name: string, timeoutMs?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  exited: Promise<number | null>;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Starts `test/fixtures/<script>` under tsx with `env` added to a clean environment. */
export function startChildHost(script: string, env: Record<string, string>, markDir = tempDir('troupe-marks-')): ChildHost {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'test/fixtures', script)], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', MARK_DIR: markDir, ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    markDir,
    exited,
    async waitForMark(name, timeoutMs = 20_000) {
      const file = path.join(markDir, name);
      const until = Date.now() + timeoutMs;
      while (!existsSync(file)) {
        if (Date.now() > until) throw new Error(`marker ${name} did not appear within ${timeoutMs} ms`);
        if (proc.exitCode !== null) throw new Error(`host exited (${proc.exitCode}) before marker ${name}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return readFileSync(file, 'utf8');
    },
    async kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}
