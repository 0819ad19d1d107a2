/**
 * Retry timing: full-jitter exponential back-off that honours the provider's `retry-after`.
 */
import type { Random } from '../../common/clock.ts';

export interface BackoffOptions {
  /** First back-off ceiling, doubled per retry. */
  baseMs: number;
  /** Largest back-off ceiling. */
  capMs: number;
}

/**
 * The wait before retry number `retry` (1 for the first retry): uniform in
 * `[0, min(capMs, baseMs * 2^(retry-1))]` ("full jitter"), but never shorter than `retryAfterMs`
 * when the provider asked for a wait.
 */
export function backoffDelay(retry: number, options: BackoffOptions, random: Random, retryAfterMs?: number): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.max(0, retry - 1));
  const jittered = Math.floor(random() * ceiling);
  return retryAfterMs === undefined ? jittered : Math.max(jittered, Math.ceil(retryAfterMs));
}

/**
 * The wait a response asks for, in ms: `retry-after-ms`, else `retry-after` as seconds or an
 * HTTP date. `undefined` when absent, unparsable or not positive.
 */
export function retryAfterMsOf(headers: { get(name: string): string | null } | undefined, now: number): number | undefined {
  if (!headers) return undefined;
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms > 0) return ms;
  const raw = headers.get('retry-after');
  if (!raw) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return seconds > 0 ? seconds * 1000 : undefined;
  const date = Date.parse(raw);
  return Number.isFinite(date) && date > now ? date - now : undefined;
}
