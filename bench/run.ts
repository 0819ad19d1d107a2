/**
 * `npm run bench`: troupe's own cost, measured in one run on this machine against the floor (bare
 * JetStream KV writes) and against its peers (LangGraph.js with SQLite, Restate) on the same
 * workload. It prints figures and ratios; it asserts nothing. Sections: loop, peers, long,
 * dispatch, parked, recovery (`npm run bench -- <section>...`; none named runs them all).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { connectNats } from '../runtime/connection.ts';
import { startEmbeddedServer } from '../runtime/embedded-server.ts';
import { createToolRunner } from '../sandbox/runners/index.ts';
import { bwrapAvailable } from '../sandbox/isolation/index.ts';
import { fmt, medianOf, percentile, table } from './stats.ts';
import { echoBwrap, echoInline, echoThread } from './tools.ts';
import { parkedTasks } from './parked.ts';
import { recovery } from './recovery.ts';
import { longTask } from './long.ts';
import { CONCURRENT, HOSTS_PER_CORE, SEQ_TASKS, TIMED_ROUNDS, troupeConcurrent, troupePerCore, troupeSequential, type TroupeFigures } from './loop.ts';
import { natsDurability, peersSection } from './peers/index.ts';
import { kvFloor, LONG_RESULT_CHARS, LOOP_STEPS } from './workloads.ts';

const SECTIONS = ['loop', 'peers', 'long', 'dispatch', 'parked', 'recovery'];
const only = process.argv.slice(2);
const unknown = only.filter((s) => !SECTIONS.includes(s));
if (unknown.length) {
  process.stderr.write(`npm run bench: no section named ${unknown.join(', ')}; the sections are ${SECTIONS.join(', ')} (name none to run them all)\n`);
  process.exit(2);
}
const want = (section: string) => only.length === 0 || only.includes(section);
const dir = mkdtempSync(path.join(tmpdir(), 'troupe-bench-'));
const server = await startEmbeddedServer({ storeDir: path.join(dir, 'nats') });
const nc = await connectNats({ servers: [server.url], name: 'troupe-bench' });
// The floor is bare nats.js: none of troupe's connection handling (held publishes, coalesced writes).
const raw = await connect({ servers: [server.url], name: 'troupe-bench-floor', noAsyncTraces: true });
process.stdout.write(`troupe bench — Node ${process.version}, ${cpus().length} CPUs (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}), nats-server ${nc.info?.version ?? '?'} at ${server.url} (${natsDurability(nc.info?.version ?? '?').detail})\n`);

try {
  let loopFigures: TroupeFigures | undefined;
  if (want('loop')) {
    const floorCpu = process.cpuUsage();
    // The floor is timed like every runner: the median of as many rounds.
    const floorRate = (tasks: number, steps: number, writes: number) => medianOf(TIMED_ROUNDS, async () => (tasks * steps) / ((await kvFloor(raw, tasks, steps, writes)) / 1000));
    const floor1 = await floorRate(1, SEQ_TASKS * LOOP_STEPS, 1);
    const floorCpuUsed = process.cpuUsage(floorCpu);
    const floorCpuMs = (floorCpuUsed.user + floorCpuUsed.system) / 1000 / (TIMED_ROUNDS * SEQ_TASKS * LOOP_STEPS);
    const floor3 = await floorRate(1, SEQ_TASKS * LOOP_STEPS, 3);
    const seq = await troupeSequential(nc);
    table(
      `10-step tool loop, one task at a time (${SEQ_TASKS} tasks; each step: model call, tool call, durable checkpoints)`,
      ['runner', 'steps/s', 'p50 step ms', 'p99 step ms', 'vs 1-write floor', 'CPU ms/step', 'sent/step'],
      [
        ['KV floor, 1 CAS write per step', fmt(floor1), '-', '-', '100%', fmt(floorCpuMs, 2), '1'],
        ['KV floor, 3 CAS writes per step', fmt(floor3), '-', '-', `${fmt((floor3 / floor1) * 100)}%`, '-', '3'],
        ['troupe', fmt(seq.stepsPerSecond), fmt(percentile(seq.stepMs, 50), 1), fmt(percentile(seq.stepMs, 99), 1), `${fmt((seq.stepsPerSecond / floor1) * 100)}%`, fmt(seq.cpuMsPerStep, 2), fmt(seq.sendsPerStep, 1)],
      ],
      'npm run bench -- loop',
    );

    const floors = new Map<number, number>();
    const concurrent = new Map<number, number>();
    for (const tasks of CONCURRENT) {
      floors.set(tasks, await floorRate(tasks, LOOP_STEPS, 1));
      concurrent.set(tasks, await troupeConcurrent(nc, tasks));
    }
    // A host is one Node process: on a machine of several cores, run one per core (`troupe host`).
    const perCore = await troupePerCore(nc, server.url);
    const share = (steps: number | undefined, floor: number) => (steps === undefined ? '-' : `${fmt((steps / floor) * 100)}%`);
    table(
      '10-step tool loop, concurrent tasks (aggregate steps/s)',
      ['workload', 'KV floor steps/s', 'troupe, 1 host', '1 host / floor', `troupe, ${HOSTS_PER_CORE} hosts (1 per core)`, `${HOSTS_PER_CORE} hosts / floor`],
      CONCURRENT.map((tasks) => {
        const floor = floors.get(tasks)!;
        return [`${tasks} tasks at once`, fmt(floor), fmt(concurrent.get(tasks)!), share(concurrent.get(tasks), floor), perCore ? fmt(perCore.get(tasks)!) : '-', share(perCore?.get(tasks), floor)];
      }),
      'npm run bench -- loop',
      [`1 host: a host in the bench's own process. ${HOSTS_PER_CORE} hosts: each in a process of its own, all taking tasks from the one queue; the bench process only submits and watches.${perCore ? '' : ' (one core: not run)'}`],
    );
    loopFigures = { sequential: seq.stepsPerSecond, stepMs: seq.stepMs, concurrent, ...(perCore ? { perCore } : {}) };
  }

  if (want('peers')) await peersSection(nc, server.url, dir, loopFigures, (line) => process.stdout.write(`${line}\n`));

  if (want('long')) {
    const steps = Number(process.env.BENCH_LONG_STEPS ?? 1000);
    const phases = await longTask(nc, raw, steps);
    table(
      `A long task: one task of ${fmt(steps)} steps (the loop; each tool result ${LONG_RESULT_CHARS} characters, so the conversation, and the snapshot written at every step, grow)`,
      ['steps', 'troupe ms/step', 'snapshot written, KB', 'KV floor ms/write (same sizes)', 'troupe / floor'],
      phases.map((p) => [`${fmt(p.from)} to ${fmt(p.to)}`, fmt(p.troupeMs, 2), fmt(p.bytes / 1024, 1), fmt(p.floorMs, 2), `${fmt(p.troupeMs / p.floorMs, 1)}x`]),
      `BENCH_LONG_STEPS=${steps} npm run bench -- long`,
      ['The floor writes the task\'s own snapshot sizes, in order, as bare compare-and-set updates of one key: the cost of writing the whole state at every step, by itself.'],
    );
  }

  if (want('dispatch')) {
    const runner = createToolRunner({ threadPoolSize: 1, bwrapPoolSize: 1 });
    const rows: string[][] = [];
    const tools = [echoInline, echoThread, ...((await bwrapAvailable()).ok ? [echoBwrap] : [])];
    for (const tool of tools) {
      await runner.prewarm([tool]);
      const times: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        await runner.run(tool, { n: i }, { key: `bench/0/${i}`, taskId: 'bench', signal: new AbortController().signal });
        times.push(performance.now() - t0);
        // Let the warm pool refill, as it would between calls of a real task.
        if (tool.isolation !== 'inline') await new Promise((r) => setTimeout(r, 700));
      }
      rows.push([tool.isolation, fmt(percentile(times, 50), 2), fmt(percentile(times, 99), 2)]);
    }
    await runner.close();
    table('Tool dispatch overhead per call (a tool that echoes; warm pools of 1)', ['isolation', 'p50 ms', 'p99 ms'], rows, 'npm run bench -- dispatch');
  }

  if (want('parked')) {
    const count = Number(process.env.BENCH_PARKED ?? 10_000);
    const r = await parkedTasks(nc, count, 200);
    table(
      `Parked agents: ${fmt(count)} tasks waiting for an approver on one host (host and bench driver in one process)`,
      ['figure', 'value'],
      [
        ['time to park them all', `${fmt(r.parkMs / 1000, 1)} s`],
        ['process RSS before', `${fmt(r.rssBeforeMb)} MB`],
        ['process RSS with all parked', `${fmt(r.rssParkedMb)} MB`],
        ['JS heap used before / with all parked', `${fmt(r.heapBeforeMb)} / ${fmt(r.heapParkedMb)} MB`],
        ['wake-up p50 (decision published -> task resumed)', `${fmt(percentile(r.wake, 50), 1)} ms`],
        ['wake-up p99', `${fmt(percentile(r.wake, 99), 1)} ms`],
      ],
      `BENCH_PARKED=${count} npm run bench -- parked   (100,000: BENCH_PARKED=100000)`,
    );
  }

  if (want('recovery')) {
    const leaseMs = 3000;
    const r = await recovery(nc, server.url, 100, leaseMs);
    table(
      `Recovery: a host SIGKILLed with 100 tasks mid-flight; another host takes them over (host.leaseMs ${leaseMs}; the default is 30000)`,
      ['figure', 'value'],
      [
        ['tasks resumed on the other host', fmt(r.resumed.length)],
        ['kill -> resumed, p50', `${fmt(percentile(r.resumed, 50))} ms`],
        ['kill -> resumed, p99', `${fmt(percentile(r.resumed, 99))} ms`],
        ['kill -> last task done', `${fmt(r.allDoneMs)} ms`],
        ['tasks lost', fmt(r.lost)],
      ],
      'npm run bench -- recovery',
    );
  }

} finally {
  await raw.close();
  await nc.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}
