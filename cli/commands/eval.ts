import path from 'node:path';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { baselineOf, compareWithBaseline, createProgress, EvalInterruptedError, jsonReport, loadBaseline, renderReport, runEval, runFailed, saveBaseline, totalsOf } from '../eval/index.ts';
import { createLogger } from '../logger.ts';
import type { Command } from '../main.ts';
import { untilSignal } from '../signals.ts';
import { configFor } from './options.ts';

export const evalCommand: Command = {
  summary: 'run scenario files (scripted model turns, fake tools, faults, expectations) and report; exit 1 on a failure or regression',
  usage: 'troupe eval <dir|file>... [--baseline file] [--save-baseline file] [--tolerance 0.1] [--concurrency 4] [--json] [--keep]',
  options: {
    baseline: { type: 'string' },
    'save-baseline': { type: 'string' },
    tolerance: { type: 'string' },
    concurrency: { type: 'string' },
    json: { type: 'boolean' },
    keep: { type: 'boolean' },
  },
  async run({ values, positionals }) {
    if (positionals.length === 0) {
      process.stderr.write(`troupe eval: name scenario files or directories, e.g. troupe eval examples/evals\nusage: ${this.usage}\n`);
      return 2;
    }
    const tolerance = Number(values.tolerance ?? 0.1);
    if (!Number.isFinite(tolerance) || tolerance < 0) throw new TerminalError(ErrorCode.invalidConfig, `--tolerance must be a share of 0 or more (0.1 = 10%), not ${String(values.tolerance)}`);
    const concurrency = Number(values.concurrency ?? 4);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TerminalError(ErrorCode.invalidConfig, `--concurrency must be a whole number of 1 or more, not ${String(values.concurrency)}`);
    const baselineFile = typeof values.baseline === 'string' ? values.baseline : undefined;
    const saveFile = typeof values['save-baseline'] === 'string' ? values['save-baseline'] : undefined;
    // Read first: a bad baseline should stop the run before it starts, not after.
    const baseline = baselineFile ? loadBaseline(baselineFile) : undefined;
    const loaded = await configFor(values);
    // Hosts, workers and the model log nothing unless LOG_LEVEL asks: the report is the output.
    const level = process.env.LOG_LEVEL ? loaded.config.log.level : 'silent';
    const logger = createLogger({ ...loaded.config, log: { ...loaded.config.log, level } });
    // Ctrl-C stops the run at once (the nats-server it started goes with it) and exits 130.
    const interrupt = new AbortController();
    void untilSignal(logger, 'troupe eval interrupted').then(() => interrupt.abort());
    const running = runEval({
      paths: positionals,
      loaded,
      logger,
      concurrency,
      keep: values.keep === true,
      exclude: [baselineFile, saveFile].filter((f): f is string => f !== undefined),
      progress: (total) => createProgress(process.stderr, total),
      logLevel: level,
      signal: interrupt.signal,
    });
    const run = await running.catch((err: unknown) => {
      if (!(err instanceof EvalInterruptedError)) throw err;
      process.stderr.write(`\ntroupe eval: ${err.message}\n`);
      process.exit(130);
    });
    const totals = totalsOf(run.results, run.durationMs);
    const comparison = baseline && baselineFile ? compareWithBaseline(baselineFile, baseline, run.results, tolerance) : undefined;
    if (saveFile) saveBaseline(saveFile, baselineOf(run.results));
    if (values.json) {
      process.stdout.write(jsonReport(run.results, totals, comparison, { runId: run.runId, nats: run.nats, embedded: run.embedded }));
    } else {
      const header = [
        `troupe eval: ${run.results.length} scenario${run.results.length === 1 ? '' : 's'}, run ${run.runId}`,
        `  nats   ${run.embedded ? `${run.nats} (embedded, removed after the run)` : `${run.nats}${values.keep ? ' (each scenario\'s streams kept, under its own prefix)' : ''}`}`,
        "  model  the bundled simulator, playing each scenario's turns through @anthropic-ai/sdk",
      ].join('\n');
      process.stdout.write(renderReport(run.results, totals, comparison, header, { kept: values.keep === true && !run.embedded }));
      if (saveFile) process.stdout.write(`baseline saved to ${path.relative(process.cwd(), path.resolve(saveFile)) || saveFile}\n`);
    }
    return runFailed(run.results, comparison) ? 1 : 0;
  },
};
