import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EffectGateway, type EffectSpec } from '../../actors/effect-gateway.ts';
import { UnknownOutcomeError } from '../../actors/errors.ts';
import { systemClock } from '../../common/clock.ts';
import { ErrorCode, RetryableError, TerminalError } from '../../common/errors.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects } from '../../runtime/subjects.ts';
import { ensureTopology } from '../../runtime/topology.ts';
import { ledgerRecordSchema, type LedgerRecord } from '../../runtime/wire.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';

let nats: NatsTestContext;
let ledger: JsonKv<LedgerRecord>;
const logger = pino({ level: 'silent' });
const gateway = (owner = 'me') => new EffectGateway({ ledger, owner, clock: systemClock, logger });

beforeAll(async () => {
  nats = await startNats();
  const s = subjects();
  const topo = await ensureTopology(nats.nc, s, { replicas: 1, eventsMaxAgeMs: 60_000, rejectedMaxAgeMs: 60_000, duplicateWindowMs: 60_000, leaseMs: 5000 });
  ledger = new JsonKv(topo.ledger, s.buckets.ledger, ledgerRecordSchema);
});
afterAll(async () => {
  await nats?.close();
});

function spec(key: string, over: Partial<EffectSpec<string>> = {}): EffectSpec<string> & { runs: number } {
  const s: EffectSpec<string> & { runs: number } = {
    key,
    kind: 'tool',
    name: 't',
    sideEffect: true,
    irreversible: false,
    leaseMs: 5000,
    runs: 0,
    execute: async (): Promise<string> => `ran ${++s.runs}`,
    ...over,
  };
  return s;
}

describe('the effect gateway', () => {
  it('runs an effect once and replays the recorded result afterwards', async () => {
    const s = spec('g/0/1');
    expect(await gateway().run(s)).toEqual({ result: 'ran 1', replayed: false });
    expect(await gateway('other').run(s)).toEqual({ result: 'ran 1', replayed: true });
    expect(s.runs).toBe(1);
  });

  it('replays a terminal failure with its code instead of running again', async () => {
    let runs = 0;
    const s = spec('g/0/2', { execute: async () => { runs++; throw new TerminalError(ErrorCode.toolFailed, 'card declined'); } });
    await expect(gateway().run(s)).rejects.toThrow('card declined');
    await expect(gateway().run(s)).rejects.toMatchObject({ message: 'card declined' });
    expect(runs).toBe(1);
    expect((await ledger.get('g/0/2'))!.value).toMatchObject({ state: 'failed', retryable: false, error: { code: 'tool_failed' } });
  });

  it('runs a retryable failure again', async () => {
    let runs = 0;
    const s = spec('g/0/3', { execute: async () => { if (++runs === 1) throw new RetryableError(ErrorCode.toolTimeout, 'slow'); return 'ok'; } });
    await expect(gateway().run(s)).rejects.toThrow('slow');
    expect(await gateway().run(s)).toEqual({ result: 'ok', replayed: false });
  });

  it('neither starts nor records an effect whose task already let go of it', async () => {
    const controller = new AbortController();
    controller.abort(new Error('shutting down'));
    const s = spec('g/0/4', { signal: controller.signal });
    await expect(gateway().run(s)).rejects.toThrow('shutting down');
    expect(s.runs).toBe(0);
    expect(await ledger.get('g/0/4')).toBeUndefined();
  });

  it('does not record an abort that happens mid-call as the outcome', async () => {
    const controller = new AbortController();
    const s = spec('g/0/5', {
      signal: controller.signal,
      execute: async () => {
        controller.abort(new Error('lost the task'));
        throw new Error('aborted by signal');
      },
    });
    await expect(gateway().run(s)).rejects.toThrow('aborted by signal');
    expect((await ledger.get('g/0/5'))!.value.state).toBe('started');
    // The next owner finds an unfinished call from a vanished runner and (reversible) runs it.
    const again = spec('g/0/5', { leaseMs: 5000 });
    await ledger.put('g/0/5', { ...(await ledger.get('g/0/5'))!.value, leaseUntil: 0 } as LedgerRecord);
    expect(await gateway('next').run(again)).toEqual({ result: 'ran 1', replayed: false });
  });

  it('waits while another runner holds a live lease, instead of running the call twice', async () => {
    const now = Date.now();
    await ledger.create('g/0/6', { v: 1, state: 'started', kind: 'tool', name: 't', owner: 'slow-host', leaseUntil: now + 600, attempt: 1, at: now });
    const s = spec('g/0/6');
    const started = Date.now();
    const result = await gateway().run(s);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(result).toEqual({ result: 'ran 1', replayed: false });
  });

  it('refuses to repeat an irreversible call of unknown outcome without reconcile', async () => {
    await ledger.create('g/0/7', { v: 1, state: 'started', kind: 'tool', name: 'pay', owner: 'dead-host', leaseUntil: 0, attempt: 1, at: 0 });
    const s = spec('g/0/7', { irreversible: true, name: 'pay' });
    await expect(gateway().run(s)).rejects.toBeInstanceOf(UnknownOutcomeError);
    expect(s.runs).toBe(0);
  });

  it('treats an irreversible call cut off at its time limit as of unknown outcome, not as failed', async () => {
    const timedOut = () => {
      throw new RetryableError(ErrorCode.toolTimeout, 'tool "t" did not finish within 100 ms');
    };
    // Without reconcile: a person must say whether it happened; the started record stays.
    await expect(gateway().run(spec('g/0/t1', { irreversible: true, execute: async () => timedOut() }))).rejects.toBeInstanceOf(UnknownOutcomeError);
    expect((await ledger.get('g/0/t1'))!.value).toMatchObject({ state: 'started', attempt: 1 });
    // With reconcile: the outside system says it happened, and that is the call's result.
    const reconciled = spec('g/0/t2', { irreversible: true, execute: async () => timedOut(), reconcile: async () => ({ happened: true, result: 'charged' }) });
    expect(await gateway().run(reconciled)).toEqual({ result: 'charged', replayed: false });
    expect((await ledger.get('g/0/t2'))!.value).toMatchObject({ state: 'succeeded', result: 'charged' });
    // A reversible call without reconcile stays a retryable failure (running it again is harmless).
    await expect(gateway().run(spec('g/0/t3', { execute: async () => timedOut() }))).rejects.toMatchObject({ code: 'tool_timeout' });
    expect((await ledger.get('g/0/t3'))!.value).toMatchObject({ state: 'failed', retryable: true });
  });

  it('runs a call that this process is already running once, however often it is asked', async () => {
    let release!: () => void;
    const s = spec('g/0/j1', { execute: async () => (await new Promise<void>((r) => (release = r)), `ran ${++s.runs}`) });
    const g = gateway();
    const first = g.run(s);
    await new Promise((r) => setTimeout(r, 100));
    const second = g.run(s);
    release();
    expect(await first).toEqual({ result: 'ran 1', replayed: false });
    expect(await second).toEqual({ result: 'ran 1', replayed: true });
    expect(s.runs).toBe(1);
  });

  it('records a pure call (a model call) without a started record', async () => {
    const s = spec('g/0/0', { kind: 'model', sideEffect: false });
    await gateway().run(s);
    expect((await ledger.get('g/0/0'))!.value).toMatchObject({ state: 'succeeded', kind: 'model', attempt: 1 });
  });
});
