import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** A loop-agent host running in a process of its own (`bench/host-process.ts`). */
export interface HostProcess {
  readonly child: ChildProcess;
  /** Ends the process at once (SIGKILL) and waits for it to be gone. */
  kill(): Promise<void>;
}

/**
 * Starts a host in its own process against `natsUrl` and resolves once it takes tasks. `modelMs`
 * is the model's time per call (0: answered at once); `leaseMs` the host's task lease (its
 * default when omitted). The process gets a clean environment: no `NODE_EXTRA_CA_CERTS` and the
 * like to slow its start.
 */
export async function startHostProcess(o: { natsUrl: string; prefix: string; modelMs: number; leaseMs?: number }): Promise<HostProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'host-process.ts')], {
    env: { PATH: process.env.PATH ?? '', NATS_URL: o.natsUrl, PREFIX: o.prefix, MODEL_MS: String(o.modelMs), ...(o.leaseMs !== undefined ? { LEASE_MS: String(o.leaseMs) } : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`bench host exited (${code}) before it was ready`)));
  });
  return {
    child,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await gone;
    },
  };
}
