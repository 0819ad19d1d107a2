/**
 * Progress of a run on stderr: a bar redrawn in place on a terminal, a plain line per finished
 * scenario otherwise (CI logs, pipes).
 */
import type { ScenarioResult } from './run-scenario.ts';

/** What a run reports as it goes. */
export interface ProgressSink {
  started(name: string): void;
  finished(result: ScenarioResult): void;
  /** Clears the bar (on a terminal) before the report is printed. */
  close(): void;
}

/** The stream a progress display writes to: stderr, or a test's stand-in. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const BAR = 24;

/** Progress over `total` scenarios on `stream`; a bar if it is a terminal. */
export function createProgress(stream: ProgressStream, total: number, now: () => number = Date.now): ProgressSink {
  const running = new Set<string>();
  let done = 0;
  let failed = 0;
  const began = now();
  if (!stream.isTTY) {
    return {
      started: () => {},
      finished(r) {
        done++;
        const what = r.status === 'passed' ? 'passed' : r.status === 'failed' ? `FAILED (${r.checks.filter((c) => !c.passed).length} of ${r.checks.length} checks)` : 'could not run';
        stream.write(`eval [${done}/${total}] ${r.name}: ${what} in ${(r.durationMs / 1000).toFixed(1)} s\n`);
      },
      close: () => {},
    };
  }
  const draw = () => {
    const filled = total === 0 ? BAR : Math.round((done / total) * BAR);
    const names = [...running].join(', ');
    const line = `[${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}] ${done}/${total}${failed ? ` (${failed} not passing)` : ''} ${((now() - began) / 1000).toFixed(0)}s${names ? `  running: ${names}` : ''}`;
    const width = Math.max(20, (stream.columns || 80) - 1);
    stream.write(`\r\x1b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
  };
  const timer = setInterval(draw, 500);
  timer.unref();
  draw();
  return {
    started(name) {
      running.add(name);
      draw();
    },
    finished(r) {
      running.delete(r.name);
      done++;
      if (r.status !== 'passed') failed++;
      draw();
    },
    close() {
      clearInterval(timer);
      stream.write('\r\x1b[2K');
    },
  };
}
