/**
 * Request counters of a running simulator, for tests and `GET /_simulator/stats`.
 */

/** One request as the simulator saw it. */
export interface RequestRecord {
  seq: number;
  script: string | null;
  conversation: string | null;
  turn: number | null;
  model: string | null;
  maxTokens: number | null;
  stream: boolean;
  /** HTTP status sent (200 also for a stream later cut), or 0 when the client left first. */
  status: number;
  /** The fault served, if any. */
  fault: string | null;
}

/** A JSON snapshot of the counters. */
export interface SimulatorStats {
  /** Every request to `/v1/messages`, valid or not. */
  totalRequests: number;
  /** Responses by HTTP status (as a string key). */
  byStatus: Record<string, number>;
  /** Faults served, by fault type. */
  faults: Record<string, number>;
  /** Valid requests per script, and per turn index within it. */
  scripts: Record<string, { requests: number; turns: Record<string, number> }>;
  /** Valid requests per conversation, and per turn index within it. */
  conversations: Record<string, { script: string; requests: number; turns: Record<string, number> }>;
  /** The most recent requests, oldest first (at most {@link MAX_RECORDS}). */
  requests: RequestRecord[];
}

/** How many {@link RequestRecord}s are kept. */
export const MAX_RECORDS = 500;

const bump = (map: Record<string, number>, key: string) => {
  map[key] = (map[key] ?? 0) + 1;
};

/** Mutable counters; {@link snapshot} gives an independent copy. */
export class StatsRecorder {
  #stats: SimulatorStats = StatsRecorder.#empty();
  /** How often each fault (keyed by script, turn, fault index and scope) has been served. */
  #faultHits = new Map<string, number>();

  static #empty(): SimulatorStats {
    return { totalRequests: 0, byStatus: {}, faults: {}, scripts: {}, conversations: {}, requests: [] };
  }

  /** Counts a request on arrival and returns its record, completed later by the server. */
  begin(record: Omit<RequestRecord, 'seq' | 'status' | 'fault'>): RequestRecord {
    this.#stats.totalRequests++;
    const full: RequestRecord = { ...record, seq: this.#stats.totalRequests, status: 0, fault: null };
    this.#stats.requests.push(full);
    if (this.#stats.requests.length > MAX_RECORDS) this.#stats.requests.shift();
    return full;
  }

  /** Counts a valid request against its script, conversation and turn. */
  played(script: string, conversation: string, turn: number): void {
    const s = (this.#stats.scripts[script] ??= { requests: 0, turns: {} });
    s.requests++;
    bump(s.turns, String(turn));
    const c = (this.#stats.conversations[conversation] ??= { script, requests: 0, turns: {} });
    c.requests++;
    bump(c.turns, String(turn));
  }

  /** Whether the fault under `key` has been served fewer than `times` times; if so, counts one more. */
  takeFault(key: string, times: number): boolean {
    const n = this.#faultHits.get(key) ?? 0;
    if (n >= times) return false;
    this.#faultHits.set(key, n + 1);
    return true;
  }

  finish(record: RequestRecord, status: number, fault: string | null): void {
    record.status = status;
    record.fault = fault;
    bump(this.#stats.byStatus, String(status));
    if (fault) bump(this.#stats.faults, fault);
  }

  snapshot(): SimulatorStats {
    return structuredClone(this.#stats);
  }

  reset(): void {
    this.#stats = StatsRecorder.#empty();
    this.#faultHits.clear();
  }
}
