/**
 * The peer LangGraph.js with its SQLite checkpointer, on troupe's workload: a graph with a model
 * node (a scripted model answering at once) and a tool node (a noop tool), checkpointed by a
 * `SqliteSaver` on a file with `durability: "sync"`, so each super-step's checkpoint is written
 * before the next step starts (the default, "async", lets the next step run while it is written).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { AIMessage, HumanMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { END, MessagesAnnotation, START, StateGraph } from '@langchain/langgraph';
import { ToolNode, toolsCondition } from '@langchain/langgraph/prebuilt';
import { SqliteSaver } from '@langchain/langgraph-checkpoint-sqlite';
import { z } from 'zod';
import { LOOP_STEPS } from '../workloads.ts';
import { checkSteps, scriptedTurn, stepClock, type Durability, type PeerLoop, type PeerRun } from './peer.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');

/**
 * Makes sure better-sqlite3's native binding loads. npm 11 may skip install scripts on `npm ci`,
 * leaving the package without its compiled binding; then this rebuilds it once (`npm rebuild
 * better-sqlite3`, about 75 s on 2 cores) and says so, or throws an error saying what to run.
 */
export function ensureSqliteBinding(log: (line: string) => void, root = repoRoot): void {
  const require = createRequire(path.join(root, 'package.json'));
  const open = () => {
    const Database = require('better-sqlite3') as new (file: string) => { close(): void };
    new Database(':memory:').close();
  };
  try {
    open();
    return;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!/bindings file|better_sqlite3\.node|NODE_MODULE_VERSION|ERR_DLOPEN_FAILED/i.test(message) && (e as { code?: string }).code !== 'ERR_DLOPEN_FAILED') throw e;
    log(`better-sqlite3's native binding is missing or built for another Node (${message.split('\n')[0]}); running "npm rebuild better-sqlite3" once (about 75 s)...`);
  }
  const rebuilt = spawnSync('npm', ['rebuild', 'better-sqlite3'], { cwd: root, stdio: ['ignore', 2, 2] });
  try {
    if (rebuilt.status !== 0) throw new Error(`exit status ${rebuilt.status ?? rebuilt.signal}`);
    open();
  } catch (e) {
    throw new Error(`better-sqlite3 has no usable native binding and "npm rebuild better-sqlite3" did not fix it (${e instanceof Error ? e.message : String(e)}). Building it needs a C++ toolchain and Python (apt-get install build-essential python3); run "npm rebuild better-sqlite3" in ${root} and read its output.`, { cause: e });
  }
}

/** What SQLite's settings mean for acknowledged steps, from the connection's own pragmas. */
function sqliteDurability(journalMode: string, synchronous: number): Durability {
  const sync = ['OFF', 'NORMAL', 'FULL', 'EXTRA'][synchronous] ?? String(synchronous);
  const settings = `SQLite as SqliteSaver leaves it: journal_mode=${journalMode}, synchronous=${sync}`;
  const wal = journalMode.toLowerCase() === 'wal';
  if (synchronous >= 2) return { short: 'crash: safe; power loss: safe', detail: `${settings}: every commit is fsynced; survives a process crash and a power loss` };
  if (synchronous === 0) return { short: 'crash: safe; power loss: unsafe', detail: `${settings}: nothing is fsynced; survives a process crash, a power loss may lose or corrupt data` };
  if (wal) return { short: 'crash: safe; power loss: last commits', detail: `${settings}: commits go to the WAL without fsync, the WAL is fsynced when it is checkpointed (every 1,000 pages by default); survives a process crash, a power loss may roll back the last commits` };
  return { short: 'crash: safe; power loss: last commits', detail: `${settings}: survives a process crash; a power loss may lose the last commits` };
}

/** Starts the LangGraph peer with its SQLite database in `dir`. */
export async function langgraphLoop(dir: string): Promise<PeerLoop> {
  mkdirSync(dir, { recursive: true });
  const saver = SqliteSaver.fromConnString(path.join(dir, 'checkpoints.db'));
  // The saver sets its pragmas on first use; read them afterwards, so the table prints the truth.
  await saver.getTuple({ configurable: { thread_id: 'setup' } });
  const db = saver.db as unknown as { pragma(source: string, options: { simple: true }): unknown; prepare(sql: string): { get(...args: unknown[]): unknown }; close(): void };
  const journalMode = String(db.pragma('journal_mode', { simple: true }));
  const synchronous = Number(db.pragma('synchronous', { simple: true }));
  const countCheckpoints = db.prepare('SELECT count(*) AS n FROM checkpoints WHERE thread_id = ?');

  const stepLatencies: number[] = [];
  const clock = stepClock(stepLatencies);
  const modelCalls = new Map<string, number>();
  const noop = tool(async ({ n }: { n: number }) => JSON.stringify({ n }), { name: 'noop', description: 'does nothing', schema: z.object({ n: z.number() }) });
  const graph = new StateGraph(MessagesAnnotation)
    .addNode('model', (state, config) => {
      const thread = String(config.configurable?.thread_id);
      clock.tick(thread);
      modelCalls.set(thread, (modelCalls.get(thread) ?? 0) + 1);
      const turn = state.messages.filter((m) => AIMessage.isInstance(m)).length;
      const answer = scriptedTurn(turn);
      const message = answer.type === 'tool_use'
        ? new AIMessage({ content: '', tool_calls: [{ id: answer.id, name: answer.name, args: answer.input, type: 'tool_call' }] })
        : new AIMessage(answer.text);
      return { messages: [message] };
    })
    .addNode('tools', new ToolNode([noop]))
    .addEdge(START, 'model')
    .addConditionalEdges('model', toolsCondition, ['tools', END])
    .addEdge('tools', 'model')
    .compile({ checkpointer: saver });

  let next = 0;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    db.close();
  };
  return {
    name: 'LangGraph.js + SQLite',
    durability: sqliteDurability(journalMode, synchronous),
    stepLatencies,
    async run(tasks: number): Promise<PeerRun> {
      const ids = Array.from({ length: tasks }, () => `lg${next++}`);
      const started = performance.now();
      await Promise.all(ids.map((thread) => graph.invoke({ messages: [new HumanMessage(`run ${thread}`)] }, { configurable: { thread_id: thread }, durability: 'sync', recursionLimit: 4 * LOOP_STEPS })));
      const ms = performance.now() - started;
      for (const thread of ids) {
        checkSteps('LangGraph', thread, modelCalls.get(thread) ?? 0);
        modelCalls.delete(thread);
        clock.forget(thread);
      }
      // One checkpoint per super-step: the input, then 10 model and 9 tool steps.
      const written = (countCheckpoints.get(ids[0]) as { n: number }).n;
      if (written < 2 * LOOP_STEPS) throw new Error(`LangGraph: thread ${ids[0]} has ${written} checkpoints, expected at least ${2 * LOOP_STEPS}: the checkpointer is not persisting each super-step`);
      return { tasks, ms, steps: tasks * LOOP_STEPS };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
