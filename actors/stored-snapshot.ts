import type { Snapshot } from 'xstate';

/**
 * How a task machine's persisted snapshot is stored in its envelope, and read back.
 *
 * XState persists every invoked actor with its input, and an effect's input usually hands on part
 * of the machine's context: the agent loop's model call is given the whole conversation. Stored as
 * XState gives it, every write carried the conversation twice, so a task reached the server's
 * message limit at half the conversation it could keep, and each step wrote and encoded the
 * second copy. Here, a field of a child's input that *is* (the same object as) a field of its
 * machine's context is stored once, in the context, and the child's entry names where it comes
 * from (`inputFromContext`: input field -> context field). {@link restorableSnapshot} puts it back
 * before XState sees the snapshot, so the child restarts with the very input it had. Objects only:
 * a number or a string equal by value is not the same thing and is kept as it is.
 */

type Entry = Record<string, unknown>;

const isRecord = (v: unknown): v is Entry => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A persisted snapshot (from `getPersistedSnapshot()`) as it is stored: fields its children's inputs share with its context once. Never changes what it is given. */
export function storedSnapshot(persisted: unknown): unknown {
  if (!isRecord(persisted) || !isRecord(persisted.children)) return persisted;
  const context = persisted.context;
  let children: Entry | undefined;
  for (const [id, entry] of Object.entries(persisted.children)) {
    if (!isRecord(entry) || !isRecord(entry.snapshot)) continue;
    const child = storedSnapshot(entry.snapshot) as Entry;
    const input = child.input;
    const fromContext: Record<string, string> = {};
    let slim: Entry | undefined;
    if (isRecord(input) && isRecord(context)) {
      for (const [field, value] of Object.entries(input)) {
        if (typeof value !== 'object' || value === null) continue;
        const source = Object.keys(context).find((key) => context[key] === value);
        if (source === undefined) continue;
        fromContext[field] = source;
        slim ??= { ...input };
        delete slim[field];
      }
    }
    if (!slim && child === entry.snapshot) continue;
    children ??= { ...persisted.children };
    children[id] = { ...entry, snapshot: slim ? { ...child, input: slim } : child, ...(slim ? { inputFromContext: fromContext } : {}) };
  }
  return children ? { ...persisted, children } : persisted;
}

/** A stored snapshot (see {@link storedSnapshot}) as XState restores it: each child's input whole again. Snapshots stored before this form pass unchanged. */
export function restorableSnapshot(stored: unknown): Snapshot<unknown> {
  if (!isRecord(stored) || !isRecord(stored.children)) return stored as Snapshot<unknown>;
  const context = stored.context;
  const children: Entry = {};
  for (const [id, entry] of Object.entries(stored.children)) {
    if (!isRecord(entry) || !isRecord(entry.snapshot)) {
      children[id] = entry;
      continue;
    }
    const { inputFromContext, ...rest } = entry;
    const child = restorableSnapshot(entry.snapshot) as unknown as Entry;
    if (!isRecord(inputFromContext) || !isRecord(context)) {
      children[id] = { ...rest, snapshot: child };
      continue;
    }
    const input: Entry = { ...(isRecord(child.input) ? child.input : {}) };
    for (const [field, source] of Object.entries(inputFromContext)) if (typeof source === 'string') input[field] = context[source];
    children[id] = { ...rest, snapshot: { ...child, input } };
  }
  return { ...stored, children } as unknown as Snapshot<unknown>;
}
