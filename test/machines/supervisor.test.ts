import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { TaskSupervisor } from '../../actors/task-supervisor.ts';
import { decideReservation, supervisorMachine, type ReserveEvent, type SupervisorInput } from '../../machines/supervisor.machine.ts';

const input = (over: Partial<SupervisorInput['limits']> = {}, onBreach: Partial<SupervisorInput['onBreach']> = {}): SupervisorInput => ({
  limits: { usd: 1, tokens: null, steps: 8, wallClock: 60_000, noProgress: 3, ...over },
  onBreach: { usd: 'stop', tokens: 'stop', steps: 'stop', wallClock: 'stop', noProgress: 'stop', ...onBreach },
  startedAt: 1000,
});
const start = (i: SupervisorInput) => createActor(supervisorMachine, { input: i }).start();
// $3 / $15 per million tokens, cache write $3.75.
const reserve = (key: string, over: Partial<ReserveEvent> = {}): ReserveEvent => ({
  type: 'reserve', key, inputTokens: 1000, maxTokens: 4096, minTokens: 16, inputUsdPerToken: 3.75e-6, outputUsdPerToken: 15e-6, ...over,
});

describe('the supervisor statechart', () => {
  it('grants the full max_tokens when the worst case fits, and holds it', () => {
    const a = start(input());
    a.send(reserve('t/0/0'));
    const c = a.getSnapshot().context;
    expect(c.granted['t/0/0']).toBe(4096);
    expect(c.reserved['t/0/0']!.usd).toBeCloseTo(1000 * 3.75e-6 + 4096 * 15e-6, 12);
    expect(c.used.steps).toBe(1);
  });

  it('clamps max_tokens so the worst case cannot cross the ceiling', () => {
    const a = start(input({ usd: 0.01 }));
    a.send(reserve('t/0/0'));
    const granted = a.getSnapshot().context.granted['t/0/0']!;
    // ($0.01 - 1000 input tokens at $3.75/M) / $15/M = 416.67 -> 416 output tokens.
    expect(granted).toBe(416);
    expect(1000 * 3.75e-6 + granted * 15e-6).toBeLessThanOrEqual(0.01);
  });

  it('halts instead of making a call whose minimum does not fit', () => {
    // $0.0038 leaves $0.00005 after the input: 3 output tokens, under the 16 minimum.
    const a = start(input({ usd: 0.0038 }));
    a.send(reserve('t/0/0'));
    const s = a.getSnapshot();
    expect(s.status).toBe('done');
    expect(s.context.breach).toMatchObject({ limit: 'usd', max: 0.0038 });
    expect(s.context.granted['t/0/0']).toBeUndefined();
  });

  it('settles the actual cost once, even when the same call is replayed', () => {
    const a = start(input());
    a.send(reserve('t/0/0'));
    a.send({ type: 'settle', key: 't/0/0', usd: 0.01, tokens: 1200 });
    a.send(reserve('t/0/0'));
    a.send({ type: 'settle', key: 't/0/0', usd: 0.01, tokens: 1200 });
    const c = a.getSnapshot().context;
    expect(c.used).toEqual({ usd: 0.01, tokens: 1200, steps: 1 });
    expect(c.reserved).toEqual({});
  });

  it('gives a re-dispatched call the same grant without counting a second step', () => {
    const a = start(input({ usd: 0.05 }));
    a.send(reserve('t/0/0'));
    const first = a.getSnapshot().context.granted['t/0/0'];
    a.send(reserve('t/0/0'));
    expect(a.getSnapshot().context.granted['t/0/0']).toBe(first);
    expect(a.getSnapshot().context.used.steps).toBe(1);
  });

  it('counts holds of calls in flight against the ceiling', () => {
    const c = start(input({ usd: 0.1 })).getSnapshot().context;
    const held = { ...c, reserved: { 'x/0/0': { usd: 0.097, tokens: 0 } } };
    expect(decideReservation(c, reserve('t/1/0'))).toEqual({ maxTokens: 4096 });
    expect(decideReservation(held, reserve('t/1/0'))).toMatchObject({ breach: { limit: 'usd' } });
  });

  it('stops at the step cap before the call that would pass it', () => {
    const a = start(input({ steps: 2, usd: null }));
    a.send(reserve('t/0/0'));
    a.send(reserve('t/1/0'));
    expect(a.getSnapshot().status).toBe('active');
    a.send(reserve('t/2/0'));
    expect(a.getSnapshot().context.breach).toMatchObject({ limit: 'steps', used: 2, max: 2 });
  });

  it('enforces a token ceiling', () => {
    const a = start(input({ usd: null, tokens: 3000 }));
    a.send(reserve('t/0/0'));
    expect(a.getSnapshot().context.granted['t/0/0']).toBe(2000);
  });

  it('counts consecutive repeated steps and resets on progress', () => {
    const a = start(input());
    for (const f of ['a', 'b', 'a', 'b', 'c', 'c']) a.send({ type: 'step', fingerprint: f });
    expect(a.getSnapshot().context.stale).toBe(1);
    a.send({ type: 'step', fingerprint: 'a' });
    expect(a.getSnapshot().context.breach).toBeNull();
    a.send({ type: 'step', fingerprint: 'b' });
    expect(a.getSnapshot().context.breach).toMatchObject({ limit: 'noProgress', used: 3, max: 3 });
  });

  it('escalates when the policy says so, resumes on a grant and halts on a denial', () => {
    const a = start(input({ usd: 0.0038 }, { usd: 'escalate' }));
    a.send(reserve('t/0/0'));
    expect(a.getSnapshot().value).toBe('escalating');
    a.send({ type: 'grant', limit: 'usd', amount: 1 });
    expect(a.getSnapshot().value).toBe('active');
    expect(a.getSnapshot().context.limits.usd).toBeCloseTo(1.0038, 12);
    a.send(reserve('t/0/0'));
    expect(a.getSnapshot().context.granted['t/0/0']).toBe(4096);

    const b = start(input({ wallClock: 10 }, { wallClock: 'escalate' }));
    b.send({ type: 'wallClock' });
    expect(b.getSnapshot().value).toBe('escalating');
    b.send({ type: 'deny', reason: 'no' });
    expect(b.getSnapshot().status).toBe('done');
  });

  it('treats a reply cut off at a max_tokens the budget lowered as that budget\'s breach', () => {
    const a = start(input({ usd: 0.01 }));
    a.send(reserve('t/0/0'));
    a.send({ type: 'settle', key: 't/0/0', usd: 0.0099, tokens: 1416, cutOff: true });
    expect(a.getSnapshot().context.breach).toMatchObject({ limit: 'usd', message: expect.stringContaining('cut off at the 416 output tokens') });
    // Cut off at the route's own max_tokens (not lowered by a ceiling): not a breach.
    const b = start(input());
    b.send(reserve('t/0/0'));
    b.send({ type: 'settle', key: 't/0/0', usd: 0.07, tokens: 5096, cutOff: true });
    expect(b.getSnapshot().context.breach).toBeNull();
  });

  it('releases the hold of a call that failed without being billed', () => {
    const a = start(input());
    a.send(reserve('t/0/0'));
    a.send({ type: 'release', key: 't/0/0' });
    expect(a.getSnapshot().context.reserved).toEqual({});
  });

  it('persists and restores with its budget intact', () => {
    const a = start(input());
    a.send(reserve('t/0/0'));
    a.send({ type: 'settle', key: 't/0/0', usd: 0.2, tokens: 10 });
    const persisted = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    const b = createActor(supervisorMachine, { snapshot: persisted, input: input() }).start();
    expect(b.getSnapshot().context.used).toEqual({ usd: 0.2, tokens: 10, steps: 1 });
  });

  it('restores a snapshot persisted when its sets were records: settled calls and seen steps still count', () => {
    const a = start(input());
    a.send(reserve('t/0/0'));
    a.send({ type: 'settle', key: 't/0/0', usd: 0.2, tokens: 10 });
    a.send({ type: 'step', fingerprint: 'fp1' });
    const persisted = JSON.parse(JSON.stringify(a.getPersistedSnapshot())) as { context: Record<string, unknown> };
    expect(persisted.context.settled).toEqual(['t/0/0']);
    // As a host before the lists wrote it.
    persisted.context.settled = { 't/0/0': true };
    persisted.context.seen = { fp1: true };
    const b = TaskSupervisor.restore(persisted);
    b.actor.send({ type: 'settle', key: 't/0/0', usd: 0.2, tokens: 10 });
    expect(b.context.used.usd).toBe(0.2);
    b.actor.send({ type: 'step', fingerprint: 'fp1' });
    expect(b.context.stale).toBe(1);
    expect(b.context.seen).toEqual(['fp1']);
  });
});
