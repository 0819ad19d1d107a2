import { z } from 'zod';

/** How bad it is if the tool runs when it should not have, or runs twice. */
export type Reversibility = 'read' | 'reversible' | 'irreversible';
/** Where a call runs. `inline` is in the host process: trusted, read-only code only. */
export type Isolation = 'inline' | 'thread' | 'bwrap';

/** Handed to a tool's `run`. */
export interface ToolContext {
  /** The call's idempotency key: forward it to downstream APIs (`Idempotency-Key`). */
  key: string;
  taskId: string;
  /** Aborted when the call times out or the host shuts down hard. */
  signal: AbortSignal;
}

/** What `reconcile` found out about a call whose outcome is unknown (its runner died). */
export type Reconciliation<O> = { happened: true; output: O } | { happened: false };

/** A tool as the user declares it. One definition feeds the model, the gates and the runner. */
export interface ToolDefinition<I = unknown, O = unknown> {
  /** Lower-case letters, digits, `_`, `-`; 1 to 64 characters (the model API's rule). */
  name: string;
  /** What the tool does and when to use it: the model reads this. */
  description: string;
  input: z.ZodType<I>;
  output: z.ZodType<O>;
  /** @default "read" */
  reversibility?: Reversibility;
  /** @default "inline" */
  isolation?: Isolation;
  /**
   * Its output comes from outside (web pages, emails, tickets) and may carry injected
   * instructions: once it is in a task's context, irreversible tools need a human.
   * @default false
   */
  untrusted?: boolean;
  /** Longest a call may run. @default 30000 */
  timeoutMs?: number;
  /**
   * The money a call with these arguments moves (in the unit approvers' `maxAmount` uses, e.g.
   * USD). Shown on approval requests; an approver may only approve calls up to their `maxAmount`.
   */
  amount?: (input: I) => number;
  /** Semantic checks on parsed arguments before any side effect; return a reason to refuse. */
  validate?: (input: I) => string | undefined | Promise<string | undefined>;
  /**
   * Asks the outside system whether the call with this key already happened. Called when a
   * runner died mid-call, so a side effect is neither lost nor done twice.
   */
  reconcile?: (key: string, input: I) => Promise<Reconciliation<O>>;
  run: (input: I, context: ToolContext) => Promise<O>;
}

/** A validated tool, ready for the gates and the runner. */
export interface Tool<I = unknown, O = unknown> extends Required<Pick<ToolDefinition<I, O>, 'name' | 'description' | 'input' | 'output' | 'reversibility' | 'isolation' | 'timeoutMs' | 'untrusted' | 'run'>> {
  validate: ToolDefinition<I, O>['validate'];
  amount: ToolDefinition<I, O>['amount'];
  reconcile: ToolDefinition<I, O>['reconcile'];
  /** The input schema as JSON Schema, for the model's tool list. */
  inputJsonSchema: Record<string, unknown>;
  /** Whether running it twice could do harm (anything but `read`). */
  sideEffect: boolean;
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Declares a tool. Throws at definition time if the definition is unusable. */
export function defineTool<I, O>(definition: ToolDefinition<I, O>): Tool<I, O> {
  if (!TOOL_NAME.test(definition.name)) {
    throw new TypeError(`tool name ${JSON.stringify(definition.name)} must match ${TOOL_NAME}`);
  }
  if (!definition.description?.trim()) throw new TypeError(`tool "${definition.name}" needs a description: the model chooses tools by it`);
  const reversibility = definition.reversibility ?? 'read';
  const jsonSchema = z.toJSONSchema(definition.input, { target: 'draft-2020-12', io: 'input' }) as Record<string, unknown>;
  delete jsonSchema.$schema;
  if (jsonSchema.type !== 'object') throw new TypeError(`tool "${definition.name}" input must be a z.object(...) schema`);
  return Object.freeze({
    name: definition.name,
    description: definition.description,
    input: definition.input,
    output: definition.output,
    reversibility,
    isolation: definition.isolation ?? 'inline',
    timeoutMs: definition.timeoutMs ?? 30_000,
    untrusted: definition.untrusted ?? false,
    validate: definition.validate,
    amount: definition.amount,
    reconcile: definition.reconcile,
    run: definition.run,
    inputJsonSchema: jsonSchema,
    sideEffect: reversibility !== 'read',
  });
}
