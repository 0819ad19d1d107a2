import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';

const here = import.meta.dirname;

/** A host or worker process of the chaos run that can be started, killed, paused and restarted. */
export class ChaosProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  /** Times it was started. */
  incarnations = 0;
  /** The process id of every incarnation. */
  readonly pids: number[] = [];
  /** The id it reported when ready (host or worker id). */
  id = '';
  /** A host's Prometheus endpoint, when it serves one. */
  metricsUrl: string | undefined;

  constructor(
    readonly role: 'host' | 'worker',
    readonly name: string,
    private readonly env: Record<string, string>,
    /** Where its log lines (JSON) and anything it prints on stderr go. */
    readonly logFile: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts it and resolves once it says it is ready (throws if it exits first or takes over `timeoutMs`). */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.alive) return;
    const err = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, `${this.role}-process.ts`)], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NAME: this.name, LOG_FILE: this.logFile, ...this.env },
      stdio: ['ignore', 'pipe', err],
    });
    closeSync(err);
    this.child = child;
    this.incarnations++;
    if (child.pid) this.pids.push(child.pid);
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${this.name} was not ready within ${timeoutMs} ms (log: ${this.logFile})`));
      }, timeoutMs);
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (chunk: string) => {
        out += chunk;
        const m = /^ready (.*)$/m.exec(out);
        if (m) {
          clearTimeout(timer);
          const said = JSON.parse(m[1]!) as { id: string; metrics?: string };
          this.id = said.id;
          this.metricsUrl = said.metrics;
          child.stdout!.removeAllListeners('data');
          child.stdout!.resume();
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code ?? signal}) before it was ready (log: ${this.logFile})`));
      });
    });
  }

  /** Sends `signal` (SIGKILL: a crash) and waits for the process to be gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive) return;
    // A stopped process would not act on SIGTERM; it does die of SIGKILL either way.
    this.child!.kill('SIGCONT');
    this.child!.kill(signal);
    await this.exited;
  }

  /** SIGTERM, the graceful shutdown; SIGKILL if it has not exited after `graceMs`. Resolves with how it exited. */
  async terminate(graceMs = 30_000): Promise<'graceful' | 'killed' | 'not running'> {
    if (!this.alive) return 'not running';
    this.child!.kill('SIGCONT');
    this.child!.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
    return this.child?.exitCode === 0 ? 'graceful' : 'killed';
  }

  /** Tasks a host runs now (its `troupe_tasks_running` gauge); 0 if it cannot be asked. */
  async running(): Promise<number> {
    if (!this.alive || !this.metricsUrl) return 0;
    try {
      const text = await (await fetch(this.metricsUrl, { signal: AbortSignal.timeout(1000) })).text();
      return Number(/^troupe_tasks_running (\d+)$/m.exec(text)?.[1] ?? 0);
    } catch {
      return 0;
    }
  }

  /** SIGSTOP: frozen, its connection open, its leases running out. */
  pause(): void {
    if (this.alive) this.child!.kill('SIGSTOP');
  }

  /** SIGCONT. */
  resume(): void {
    if (this.alive) this.child!.kill('SIGCONT');
  }
}
