/**
 * A whole eval run: find and validate the scenario files, get a NATS (the configured one, or an
 * embedded nats-server the run starts and removes), run the scenarios a few at a time, each on
 * its own prefix, and hand back every result in file order.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import type { Logger } from 'pino';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import type { LoadedConfig } from '../../config/load.ts';
import type { TroupeConfig } from '../../config/schema.ts';
import { startEmbeddedServer } from '../../runtime/embedded-server.ts';
import type { ProgressSink } from './progress.ts';
import { errorResult, problemLines, runScenario, type ScenarioResult } from './run-scenario.ts';
import { findScenarioFiles, loadScenarioFile, ScenarioFileError, type LoadedScenario } from './scenario-file.ts';

/** Options of {@link runEval}. */
export interface EvalOptions {
  /** Scenario files and directories. */
  paths: readonly string[];
  loaded: LoadedConfig;
  logger: Logger;
  /** Scenarios run at once. @default 4 */
  concurrency?: number;
  /** Files never read as scenarios (the baseline files). */
  exclude?: readonly string[];
  /** Keep each scenario's streams and buckets on a NATS the run did not start. @default false */
  keep?: boolean;
  progress?: (total: number) => ProgressSink;
  logLevel?: TroupeConfig['log']['level'];
  /**
   * Aborting it stops the run at once: the embedded nats-server is stopped and its data removed,
   * and the run rejects with an `EvalInterruptedError`. Scenarios in flight are abandoned (the
   * caller exits the process; child processes exit with it).
   */
  signal?: AbortSignal;
}

/** The run was stopped by its signal (Ctrl-C). */
export class EvalInterruptedError extends TerminalError {
  override readonly name = 'EvalInterruptedError';
  constructor(readonly runId: string, readonly nats: string, readonly embedded: boolean) {
    super(ErrorCode.cancelled, embedded ? 'interrupted; the nats-server it started is stopped and its data removed' : `interrupted; the scenarios' streams (prefixes ev${runId}*) may be left on ${nats}`);
  }
}

/** What a run did. */
export interface EvalRun {
  runId: string;
  /** The NATS the scenarios ran against. */
  nats: string;
  embedded: boolean;
  results: ScenarioResult[];
  durationMs: number;
}

/** Runs every scenario found under `paths`. Throws only when there is nothing to run or no NATS. */
export async function runEval(o: EvalOptions): Promise<EvalRun> {
  const started = Date.now();
  const found = findScenarioFiles(o.paths, o.exclude);
  if (found.length === 0) throw new TerminalError(ErrorCode.notFound, `no scenario files (.yaml, .yml, .json) in ${o.paths.join(', ')}`);
  const slots: Array<LoadedScenario | ScenarioResult> = [];
  const names = new Map<string, string>();
  for (const f of found) {
    const loaded = 'error' in f ? f.error : loadScenarioFile(f.file);
    if (loaded instanceof ScenarioFileError) {
      slots.push(errorResult(loaded.file, path.basename(loaded.file).replace(/\.(ya?ml|json)$/, ''), problemLines(loaded)));
      continue;
    }
    const other = names.get(loaded.scenario.name);
    if (other !== undefined) {
      const at = loaded.locate(['name']);
      slots.push(errorResult(loaded.file, `${loaded.scenario.name}@${path.basename(loaded.file)}`, [`${loaded.file}${at ? `:${at.line}:${at.column}` : ''}: name: "${loaded.scenario.name}" is already the name of ${other}; names key the baseline, so give this scenario its own \`name\``]));
      continue;
    }
    names.set(loaded.scenario.name, loaded.file);
    slots.push(loaded);
  }
  const runnable = slots.filter((s): s is LoadedScenario => 'scenario' in s);
  const progress = o.progress?.(slots.length);
  for (const s of slots) if (!('scenario' in s)) progress?.finished(s);

  let servers = o.loaded.config.nats.servers;
  const embedded = !servers?.length && runnable.length > 0;
  let stopServer = async () => {};
  if (embedded) {
    const storeDir = mkdtempSync(path.join(tmpdir(), 'troupe-eval-nats-'));
    try {
      const server = await startEmbeddedServer({ storeDir, binary: o.loaded.config.embedded.binary });
      servers = [server.url];
      stopServer = async () => {
        await server.close();
        rmSync(storeDir, { recursive: true, force: true });
      };
    } catch (err) {
      rmSync(storeDir, { recursive: true, force: true });
      progress?.close();
      throw err;
    }
  }
  const runId = randomBytes(4).readUInt32BE(0).toString(36).padStart(6, '0').slice(-6);
  const approverKey = createUser();
  const results = new Map<LoadedScenario, ScenarioResult>();
  try {
    // The scenarios that wait out leases and dispatch timeouts start first, so that the quick
    // ones fill the time they spend waiting instead of running after them.
    const order = runnable.map((_, i) => i).sort((a, b) => weight(runnable[b]!) - weight(runnable[a]!) || a - b);
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = order[next++];
        if (i === undefined) return;
        const scenario = runnable[i]!;
        progress?.started(scenario.scenario.name);
        const result = await runScenario(scenario, i, { servers: servers ?? [], embedded, loaded: o.loaded, runId, approverKey, keep: o.keep ?? false, logger: o.logger, ...(o.logLevel ? { logLevel: o.logLevel } : {}) });
        results.set(scenario, result);
        progress?.finished(result);
      }
    };
    const interrupted = new Promise<never>((_, reject) => {
      const stop = () => reject(new EvalInterruptedError(runId, servers?.join(',') ?? '-', embedded));
      if (o.signal?.aborted) stop();
      o.signal?.addEventListener('abort', stop, { once: true });
    });
    await Promise.race([Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency ?? 4, runnable.length)) }, worker)), interrupted]);
  } finally {
    progress?.close();
    await stopServer();
  }
  return {
    runId,
    nats: servers?.join(',') ?? '-',
    embedded,
    results: slots.map((s) => ('scenario' in s ? results.get(s)! : s)),
    durationMs: Date.now() - started,
  };
}

/** A rough rank of how long a scenario waits: a crashed worker's call waits for its dispatch timeout, a killed host's task for its lease. */
function weight(s: LoadedScenario): number {
  const kinds = new Set(s.scenario.faults.map((f) => f.type));
  return kinds.has('worker_crash') ? 3 : kinds.has('host_kill') ? 2 : 1;
}
