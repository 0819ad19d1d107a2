import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { spender, spenderScenario } from '../helpers/spender.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** An approver at a real terminal (tmux): sees the parked task, picks it, approves it, and the task ends. */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LAUNCHER = fileURLToPath(new URL('./fixtures/approver-launcher.ts', import.meta.url));


const ada = createUser();
const session = 'approver';
const dir = mkdtempSync(path.join(tmpdir(), 'troupe-tty-'));
// A private tmux server whose socket goes away with the test's directory.
const socket = path.join(dir, 'tmux.sock');
let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;
let tmuxStarted = false;

const tmux = (...args: string[]) => execFileSync('tmux', ['-S', socket, ...args], { encoding: 'utf8' });
const pane = () => tmux('capture-pane', '-p', '-J', '-t', session, '-S', '-500');
const keys = (...k: string[]) => tmux('send-keys', '-t', session, ...k);

/** Polls the pane until `pattern` shows; the pane's text on failure says what the approver saw instead. */
async function screenShows(pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < until) {
    text = pane();
    if (pattern.test(text)) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the terminal never showed ${pattern}; it shows:\n${text}`);
}

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario: spenderScenario() });
  const model = createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url, routing: { default: { model: 'claude-opus-4-6', maxTokens: 4096 }, roles: {} } });
  host = await startHost(nats.url, [spender], model, { approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] });
});
afterAll(async () => {
  if (tmuxStarted) {
    try {
      tmux('kill-server');
    } catch {
      // Already gone: the session ended with its program.
    }
  }
  await host?.stop();
  await sim?.close();
  await nats?.close();
  rmSync(dir, { recursive: true, force: true });
});

const hasTmux = (() => {
  try {
    execFileSync('tmux', ['-V']);
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasTmux)(`the interactive terminal approver${hasTmux ? '' : ' (skipped: tmux is absent; apt-get install tmux)'}`, () => {
  it('shows the parked request, approves it with a grant from the keyboard, and the task completes', async () => {
    await submit(nats.nc, nats.js, 'spender', { taskId: 'tty-1', input: { q: 'spend' } });
    // Parked before the terminal opens, so the first list already has it.
    const { subjects } = await import('../../runtime/subjects.ts');
    const { taskHistory } = await import('../../runtime/task-watch.ts');
    for (let i = 0; i < 200 && !(await taskHistory(nats.js, subjects(), 'tty-1')).some((e) => e.type === 'escalated'); i++) await new Promise((r) => setTimeout(r, 50));

    const keyFile = path.join(dir, 'ada.nk');
    writeFileSync(keyFile, new TextDecoder().decode(ada.getSeed()), { mode: 0o600 });
    tmux(
      'new-session', '-d', '-s', session, '-x', '160', '-y', '50', '-c', ROOT,
      '-e', `NATS_URL=${nats.url}`, '-e', `TROUPE_APPROVER_KEY=${keyFile}`,
      // Keeps the pane readable after the program exits, so its last words can be asserted.
      `${process.execPath} --import tsx ${LAUNCHER}; echo "[exit $?]"; sleep 30`,
    );
    tmuxStarted = true;

    let screen = await screenShows(/choose 1-1/);
    expect(screen).toContain(`approving as ${ada.getPublicKey()} (tty: true)`);
    expect(screen).toMatch(/1 request waiting, oldest first:\n\s+1\) task tty-1, agent spender: limit usd \(/);

    keys('1', 'Enter');
    screen = await screenShows(/\[a\]pprove \/ \[r\]eject \/ \[b\]ack: $/m);
    expect(screen).toMatch(/request tty-1\.usd\.\S+/);
    expect(screen).toContain('asks for more of limit: usd');
    expect(screen).toContain('usd limit reached');
    expect(screen).toMatch(/cost so far: \$\d+\.\d{4}, \d+ tokens, \d+ steps/);
    expect(screen).toContain('deadline: none');

    keys('a', 'Enter');
    await screenShows(/grant how much more\? \[0\.1\]: $/m);
    keys('0.5', 'Enter');
    screen = await screenShows(/applied: approve of tty-1\.usd\.\S+ \(decision \S+\); task tty-1 continues/);

    const events = await eventsUntilEnd(nats.js, 'tty-1');
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'All done.' });

    // The task has ended, so a refreshed list no longer has the request; q leaves cleanly.
    keys('Enter');
    await screenShows(/nothing is waiting for an approver\n\[enter\] refresh, \[q\] quit: $/m);
    keys('q', 'Enter');
    screen = await screenShows(/approver exited\n\[exit 0\]/);
    if (process.env.SHOW_PANE) process.stdout.write(screen);
  }, 90_000);
});
