/**
 * Branded identifiers: a `TaskId` cannot be passed where an `EffectKey` is expected.
 */

declare const brand: unique symbol;
/** Nominal typing for strings that must not be mixed up. */
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A task's identifier: a single NATS subject token and a valid KV key. */
export type TaskId = Brand<string, 'TaskId'>;
/** `<taskId>/<step>/<callIndex>`: the deterministic idempotency key of one effect. */
export type EffectKey = Brand<string, 'EffectKey'>;

/** Longest task id accepted. Subjects and KV keys stay well under server limits. */
export const MAX_TASK_ID_LENGTH = 128;

/**
 * A task id is letters, digits, `_` and `-`, 1 to 128 characters: no `.`, `*`, `>` or
 * whitespace, so it is always exactly one subject token and a legal KV key.
 */
export const TASK_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** An agent name is a single lower-case subject token. */
export const AGENT_NAME_PATTERN = /^[a-z][a-z0-9_-]{0,63}$/;

export function isTaskId(value: string): value is TaskId {
  return TASK_ID_PATTERN.test(value);
}

export function effectKey(taskId: TaskId, step: number, callIndex: number): EffectKey {
  return `${taskId}/${step}/${callIndex}` as EffectKey;
}
