import { createMachine, type AnyStateMachine } from 'xstate';
import type { Agent } from '../../actors/agent.ts';
import { refundDesk } from '../../examples/refund-desk/agent.ts';
import { refundMachine } from '../../examples/refund-desk/refund.machine.ts';
import { lookupOrder, supportDesk } from '../../examples/support-desk/agent.ts';

/**
 * The example agents after a change, for replay tests (also loaded by the CLI through a config
 * that lists this module): same names, so they replay the examples' recorded tasks.
 */

/** The refund workflow, changed so that only replacements get a ticket: refunds go to the triage loop. */
const onlyReplacementsMachine = createMachine(
  {
    ...refundMachine.config,
    states: {
      ...refundMachine.config.states,
      decide: { always: [{ guard: ({ context }: { context: { decision: string | null } }) => context.decision === 'replace', target: 'ticket' }, { target: 'triage' }] },
    },
  } as never,
  refundMachine.implementations as never,
) as unknown as AnyStateMachine;

export const refundDeskOnlyReplacements: Agent<any> = Object.freeze({ ...refundDesk, version: '2', machine: onlyReplacementsMachine });

/** The support desk, changed so that its order lookup refuses every order (a stricter `validate`). */
export const supportDeskArchived: Agent<any> = Object.freeze({
  ...supportDesk,
  tools: new Map([['lookup_order', Object.freeze({ ...lookupOrder, validate: ({ orderId }: { orderId: string }) => `order ${orderId} is archived` })]]),
});
