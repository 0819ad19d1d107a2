import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { ORDERS } from './orders.ts';

/** Reads an order from the shop's order system. Read-only, so it runs inline in the host. */
export const lookupOrder = defineTool({
  name: 'lookup_order',
  description: 'Look up a customer order by its id (for example "A-1001"): status, carrier, estimated delivery and items.',
  input: z.object({ orderId: z.string().regex(/^[A-Z]-\d{3,}$/, 'an order id such as "A-1001"') }),
  output: z.object({
    orderId: z.string(),
    found: z.boolean(),
    status: z.string(),
    carrier: z.string().nullable(),
    eta: z.string().nullable(),
    items: z.array(z.string()),
  }),
  reversibility: 'read',
  validate: ({ orderId }) => (ORDERS.has(orderId) ? undefined : `order ${orderId} does not exist; ask the customer to check the id`),
  run: async ({ orderId }) => {
    const order = ORDERS.get(orderId)!;
    return { ...order, found: true };
  },
});

/**
 * The demo agent: a support desk that looks up the order a customer asks about and drafts a
 * reply. Open-ended, so it runs on the agent loop (think -> tools -> observe).
 */
export const supportDesk = defineAgent({
  name: 'support-desk',
  description: 'Answers a customer question about an order: looks the order up and drafts a reply.',
  version: '1',
  input: z.object({
    customer: z.string().min(1).describe('customer name'),
    message: z.string().min(1).max(4000).describe("the customer's message"),
  }),
  exampleInput: { customer: 'Ada', message: 'Hi, where is my order A-1001? It has been a week.' },
  system:
    'You are the support desk of a coffee equipment shop. Use lookup_order to check any order the customer mentions before answering. Reply briefly and politely; never promise refunds.',
  tools: [lookupOrder],
  limits: { steps: 6, wallClockMs: 60_000 },
  prompt: ({ customer, message }) => `Customer ${customer} writes:\n\n${message}`,
});
