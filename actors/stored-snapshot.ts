import type { AnyStateMachine, Snapshot } from 'xstate';

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

/**
 * `machine` (changed in place, and returned), persisted without XState's walk of its context.
 *
 * XState's persisted snapshot walks the whole context, every time, for actor references to
 * replace by their ids. troupe's contexts are JSON (DESIGN: context is JSON-safe), and the agent
 * loop's holds the conversation, which grows with every step: the walk made each write of a long
 * task slower than the one before (18% of a host's CPU at a task's 1,000th step, more than
 * encoding the snapshot). A snapshot that has a child none of `sources` names, an actor the
 * machine spawned and may hold a reference to in its context, is persisted by XState as before.
 */
export function persistedWithoutWalk<M extends AnyStateMachine>(machine: M, sources: ReadonlySet<string>): M {
  const persist = machine.getPersistedSnapshot.bind(machine);
  machine.getPersistedSnapshot = (snapshot, options) => {
    const { children, context } = snapshot as unknown as { children: Record<string, { src: unknown }>; context: unknown };
    for (const id in children) if (typeof children[id]!.src !== 'string' || !sources.has(children[id]!.src)) return persist(snapshot, options);
    return { ...persist({ ...snapshot, context: undefined } as typeof snapshot, options), context };
  };
  return machine;
}

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
