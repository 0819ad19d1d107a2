import { assign, setup } from 'xstate';

/** The limits a supervisor enforces. */
export type LimitName = 'usd' | 'tokens' | 'steps' | 'wallClock' | 'noProgress';
/** What a breach does: end the task, or ask a human for more. */
export type BreachPolicy = 'stop' | 'escalate';

export interface SupervisorLimits {
  /** Most USD the task may spend on model calls; null: no ceiling. */
  usd: number | null;
  /** Most model tokens (input, cache and output together); null: no ceiling. */
  tokens: number | null;
  /** Most model calls. */
  steps: number;
  /** Wall-clock cap from the task's start, in ms. */
  wallClock: number;
  /** Consecutive steps without progress that end the task. */
  noProgress: number;
}

export interface SupervisorInput {
  limits: SupervisorLimits;
  onBreach: Record<LimitName, BreachPolicy>;
  /** Epoch ms the task started; the wall-clock cap counts from here, across restarts. */
  startedAt: number;
}

/** A limit reached: which, how far, and the ceiling. */
export interface Breach {
  limit: LimitName;
  used: number;
  max: number;
  message: string;
}

export interface Usage {
  usd: number;
  tokens: number;
  steps: number;
}

export interface SupervisorContext extends SupervisorInput {
  used: Usage;
  /**
   * Worst-case amounts held for calls in flight, by effect key; a child task's share of the budget
   * (delegation) also holds steps.
   */
  reserved: Record<string, { usd: number; tokens: number; steps?: number }>;
  /** `max_tokens` granted per call, so a re-dispatched call gets the same grant. */
  granted: Record<string, number>;
  /** Calls whose `max_tokens` a ceiling lowered, and which ceiling. */
  clamped: Record<string, 'usd' | 'tokens'>;
  /**
   * Calls already counted, so a replayed call is never counted twice. Sets as JSON lists: a task
   * adds to them at every step, and a list is copied in a fraction of the time a record of as many
   * keys is (a 1,000-step task spent a tenth of its host's CPU copying records here).
   */
  settled: string[];
  /** Fingerprints of every step so far (each once). */
  seen: string[];
  /** Consecutive steps that repeated an earlier one. */
  stale: number;
  breach: Breach | null;
  /** Time spent parked waiting for a human; it does not count against the wall clock. */
  pausedMs: number;
}

/** Ask for `max_tokens` for one model call, with its worst-case prices. */
export type ReserveEvent = {
  type: 'reserve';
  key: string;
  inputTokens: number;
  maxTokens: number;
  /** Below this grant the call is not worth making. */
  minTokens: number;
  /** Dearest price of an input token (the cache-write price when caching). */
  inputUsdPerToken: number;
  outputUsdPerToken: number;
};

/** Hold shares of the budget for child tasks (one delegation): granted whole or not at all. */
export type HoldEvent = { type: 'hold'; key: string; usd: number; tokens: number; steps: number };

export type SupervisorEvent =
  | ReserveEvent
  | HoldEvent
  | { type: 'settle'; key: string; usd: number; tokens: number; steps?: number; cutOff?: boolean }
  | { type: 'release'; key: string }
  | { type: 'step'; fingerprint: string }
  /** A child task ran out of its share of this limit: the tree's budget is spent. */
  | { type: 'childExhausted'; limit: 'usd' | 'tokens' | 'steps'; child: string; message: string }
  | { type: 'wallClock' }
  | { type: 'paused'; ms: number }
  | { type: 'grant'; limit: LimitName; amount: number }
  | { type: 'deny'; reason: string };

const fmt = (limit: LimitName, n: number) => (limit === 'usd' ? `$${n.toFixed(6)}` : limit === 'wallClock' ? `${n} ms` : String(n));

function breachOf(limit: LimitName, used: number, max: number, detail: string): Breach {
  return { limit, used, max, message: `${limit} limit reached: ${fmt(limit, used)} used of ${fmt(limit, max)} (${detail})` };
}

const reservedTotal = (c: SupervisorContext): Usage =>
  Object.values(c.reserved).reduce<Usage>((a, r) => ({ usd: a.usd + r.usd, tokens: a.tokens + r.tokens, steps: a.steps + (r.steps ?? 0) }), { usd: 0, tokens: 0, steps: 0 });

/**
 * What is left of each limit after everything spent and held: what a delegation may share out.
 * `null` for a limit without a ceiling.
 */
export function remainingOf(c: SupervisorContext): { usd: number | null; tokens: number | null; steps: number } {
  const held = reservedTotal(c);
  return {
    usd: c.limits.usd === null ? null : Math.max(0, c.limits.usd - c.used.usd - held.usd),
    tokens: c.limits.tokens === null ? null : Math.max(0, c.limits.tokens - c.used.tokens - held.tokens),
    steps: Math.max(0, c.limits.steps - c.used.steps - held.steps),
  };
}

/**
 * The largest `max_tokens` that keeps the worst case of this call, on top of everything spent
 * and reserved, within every ceiling; or the breach that prevents the call.
 */
export function decideReservation(c: SupervisorContext, e: ReserveEvent): { maxTokens: number; clampedBy?: 'usd' | 'tokens' } | { breach: Breach } {
  if (c.granted[e.key] !== undefined) return { maxTokens: c.granted[e.key]! };
  let clampedBy: 'usd' | 'tokens' | undefined;
  const held = reservedTotal(c);
  const stepsAfter = c.used.steps + held.steps + 1;
  if (stepsAfter > c.limits.steps) return { breach: breachOf('steps', c.used.steps + held.steps, c.limits.steps, held.steps ? `no model call left; ${held.steps} are held by child tasks` : 'no model call left') };
  let maxTokens = e.maxTokens;
  if (c.limits.usd !== null) {
    const left = c.limits.usd - c.used.usd - held.usd - e.inputTokens * e.inputUsdPerToken;
    // Floor, and a hair of margin against floating-point rounding: never round up into overspend.
    const affordable = e.outputUsdPerToken > 0 ? Math.floor((left * (1 - 1e-9)) / e.outputUsdPerToken) : e.maxTokens;
    if (affordable < e.minTokens) {
      return { breach: breachOf('usd', c.used.usd + held.usd, c.limits.usd, `the next call needs at least ${fmt('usd', e.inputTokens * e.inputUsdPerToken + e.minTokens * e.outputUsdPerToken)}`) };
    }
    if (affordable < maxTokens) clampedBy = 'usd';
    maxTokens = Math.min(maxTokens, affordable);
  }
  if (c.limits.tokens !== null) {
    const left = c.limits.tokens - c.used.tokens - held.tokens - e.inputTokens;
    if (left < e.minTokens) return { breach: breachOf('tokens', c.used.tokens + held.tokens, c.limits.tokens, `the next call needs at least ${e.inputTokens + e.minTokens}`) };
    if (left < maxTokens) clampedBy = 'tokens';
    maxTokens = Math.min(maxTokens, left);
  }
  return clampedBy ? { maxTokens, clampedBy } : { maxTokens };
}

/**
 * One task's supervisor: owns its budget and halts (or escalates) at every limit, whatever the
 * model does. Pure: the host feeds it events and reads its snapshot; it is persisted with the
 * task, so the budget survives restarts.
 *
 * - `reserve` before each model call holds its worst case and grants a clamped `max_tokens`;
 * - `settle` replaces the hold by the actual cost; `release` drops the hold of a failed call;
 * - `step` with a fingerprint of the step counts steps that repeat an earlier one;
 * - `wallClock` says the deadline passed.
 *
 * A breach goes to `escalating` when its policy is `escalate` (a `grant` raises the limit and
 * resumes, a `deny` halts), otherwise to the final `halted`.
 */
export const supervisorMachine = setup({
  types: {} as { context: SupervisorContext; input: SupervisorInput; events: SupervisorEvent },
  guards: {
    escalates: ({ context }) => context.breach !== null && context.onBreach[context.breach.limit] === 'escalate',
    breached: ({ context }) => context.breach !== null,
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({
    ...input,
    used: { usd: 0, tokens: 0, steps: 0 },
    reserved: {},
    granted: {},
    clamped: {},
    settled: [],
    seen: [],
    stale: 0,
    breach: null,
    pausedMs: 0,
  }),
  initial: 'active',
  states: {
    active: {
      always: [
        { guard: 'escalates', target: 'escalating' },
        { guard: 'breached', target: 'halted' },
      ],
      on: {
        reserve: {
          actions: assign(({ context, event }) => {
            if (context.settled.includes(event.key)) return {};
            const decision = decideReservation(context, event);
            if ('breach' in decision) return { breach: decision.breach };
            if (context.granted[event.key] !== undefined) return {};
            return {
              granted: { ...context.granted, [event.key]: decision.maxTokens },
              ...(decision.clampedBy ? { clamped: { ...context.clamped, [event.key]: decision.clampedBy } } : {}),
              reserved: {
                ...context.reserved,
                [event.key]: {
                  usd: event.inputTokens * event.inputUsdPerToken + decision.maxTokens * event.outputUsdPerToken,
                  tokens: event.inputTokens + decision.maxTokens,
                },
              },
              used: { ...context.used, steps: context.used.steps + 1 },
            };
          }),
        },
        hold: {
          actions: assign(({ context, event }) => {
            if (context.settled.includes(event.key) || context.reserved[event.key]) return {};
            const left = remainingOf(context);
            for (const limit of ['usd', 'tokens', 'steps'] as const) {
              const have = left[limit];
              if (have !== null && event[limit] > have * (1 + 1e-9)) {
                const max = context.limits[limit]!;
                return { breach: breachOf(limit, max - have, max, `child tasks need ${fmt(limit, event[limit])} and ${fmt(limit, have)} is left`) };
              }
            }
            return { reserved: { ...context.reserved, [event.key]: { usd: event.usd, tokens: event.tokens, steps: event.steps } } };
          }),
        },
        step: {
          actions: assign(({ context, event }) => {
            const repeated = context.seen.includes(event.fingerprint);
            const stale = repeated ? context.stale + 1 : 0;
            return {
              seen: repeated ? context.seen : [...context.seen, event.fingerprint],
              stale,
              breach:
                stale >= context.limits.noProgress
                  ? breachOf('noProgress', stale, context.limits.noProgress, 'consecutive steps repeated earlier tool calls and results')
                  : null,
            };
          }),
        },
        childExhausted: {
          actions: assign(({ context, event }) => {
            const max = context.limits[event.limit] ?? 0;
            const held = reservedTotal(context)[event.limit];
            return { breach: { limit: event.limit, used: context.used[event.limit] + held, max, message: `${event.limit} limit reached in child task ${event.child}, which ran out of its share: ${event.message}` } };
          }),
        },
        wallClock: {
          actions: assign(({ context }) => ({ breach: breachOf('wallClock', context.limits.wallClock, context.limits.wallClock, 'counted from the task start') })),
        },
      },
    },
    escalating: {
      on: {
        grant: {
          target: 'active',
          actions: assign(({ context, event }) => ({
            limits: { ...context.limits, [event.limit]: (context.limits[event.limit] ?? 0) + event.amount },
            // A no-progress grant is a fresh window; other grants keep their counts.
            stale: event.limit === 'noProgress' ? 0 : context.stale,
            breach: null,
          })),
        },
        deny: { target: 'halted' },
      },
    },
    halted: { type: 'final' },
  },
  // Settling works in every state: money already spent is counted even after a breach.
  on: {
    paused: { actions: assign(({ context, event }) => ({ pausedMs: context.pausedMs + Math.max(0, event.ms) })) },
    settle: {
      actions: assign(({ context, event }) => {
        if (context.settled.includes(event.key)) return {};
        const { [event.key]: _held, ...reserved } = context.reserved;
        const used = { usd: context.used.usd + event.usd, tokens: context.used.tokens + event.tokens, steps: context.used.steps + (event.steps ?? 0) };
        // An answer cut off at a max_tokens that a ceiling lowered is not an answer: the budget
        // ran out mid-reply, which is that ceiling's breach.
        const by = event.cutOff ? context.clamped[event.key] : undefined;
        const max = by ? context.limits[by] : null;
        return {
          reserved,
          settled: [...context.settled, event.key],
          used,
          ...(by && max !== null && context.breach === null
            ? { breach: breachOf(by, used[by], max, `the reply was cut off at the ${context.granted[event.key]} output tokens the budget allowed`) }
            : {}),
        };
      }),
    },
    release: {
      actions: assign(({ context, event }) => {
        const { [event.key]: _held, ...reserved } = context.reserved;
        const { [event.key]: _granted, ...granted } = context.granted;
        return { reserved, granted };
      }),
    },
  },
});

/** The deadline of a supervised task (epoch ms). */
export function deadlineOf(c: Pick<SupervisorContext, 'startedAt' | 'limits' | 'pausedMs'>): number {
  return c.startedAt + c.limits.wallClock + (c.pausedMs ?? 0);
}
