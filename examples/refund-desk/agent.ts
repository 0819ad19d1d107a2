import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { lookupOrder } from '../support-desk/agent.ts';
import { ORDERS } from '../support-desk/orders.ts';
import { refundMachine, type RefundInput } from './refund.machine.ts';

/** The demo's ticket system: a stand-in for a helpdesk API, keyed by idempotency key. */
const tickets = new Map<string, { ticketId: string; orderId: string; kind: string }>();

/**
 * Opens a refund or replacement ticket. Reversible (a ticket can be closed), and idempotent: the
 * call's key identifies the ticket, and `reconcile` asks the ticket system whether it exists.
 */
export const openTicket = defineTool({
  name: 'open_ticket',
  description: 'Open a refund or replacement ticket for an order.',
  input: z.object({ orderId: z.string(), kind: z.enum(['refund', 'replacement']) }),
  output: z.object({ ticketId: z.string() }),
  reversibility: 'reversible',
  validate: ({ orderId }) => (ORDERS.has(orderId) ? undefined : `order ${orderId} does not exist`),
  reconcile: async (key) => {
    const t = tickets.get(key);
    return t ? { happened: true, output: { ticketId: t.ticketId } } : { happened: false };
  },
  run: async ({ orderId, kind }, { key }) => {
    const ticket = tickets.get(key) ?? { ticketId: `T-${tickets.size + 1001}`, orderId, kind };
    tickets.set(key, ticket);
    return { ticketId: ticket.ticketId };
  },
});

/**
 * A refund desk run as a workflow with one bounded model step, handing unclear cases to an
 * agent loop (see refund.machine.ts). `system` here is the triage loop's prompt.
 */
export const refundDesk = defineAgent<{ orderId: string; message: string }>({
  name: 'refund-desk',
  description: 'Handles a refund or replacement request: workflow with a bounded classifier, agent loop only when unclear.',
  version: '1',
  input: z.object({ orderId: z.string().regex(/^[A-Z]-\d{3,}$/), message: z.string().min(1).max(4000) }),
  exampleInput: { orderId: 'A-1003', message: 'The milk jug arrived broken, can you send a new one?' },
  system: 'You are the refund triage desk of a coffee equipment shop. Look the order up with lookup_order, then draft a short reply asking the customer what they would like us to do. Never promise a refund.',
  tools: [lookupOrder, openTicket],
  models: { classify: { model: 'claude-haiku-4-5', maxTokens: 16 } },
  limits: { steps: 4 },
  machine: refundMachine,
  machineInput: ({ taskId, input, limits }): RefundInput => ({ taskId, orderId: input.orderId, message: input.message, maxSteps: limits.steps }),
});
