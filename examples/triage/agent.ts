import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { lookupOrder } from '../support-desk/agent.ts';

const question = z.object({ customer: z.string().min(1), message: z.string().min(1).max(4000) });

/** Answers the money side of a customer message: refunds, charges, invoices. */
export const billingSpecialist = defineAgent({
  name: 'billing-specialist',
  description: 'Answers the billing part of a customer message (refunds, charges, invoices).',
  input: question,
  system: 'You are the billing specialist of a coffee equipment shop. Answer only the billing part of the message, in two sentences.',
  limits: { steps: 3 },
  prompt: ({ customer, message }) => `Customer ${customer} writes:\n\n${message}`,
});

/** Answers the delivery side of a customer message, looking the order up. */
export const shippingSpecialist = defineAgent({
  name: 'shipping-specialist',
  description: 'Answers the delivery part of a customer message, looking up the order.',
  input: question,
  system: 'You are the shipping specialist of a coffee equipment shop. Use lookup_order, then answer only the delivery part of the message, in two sentences.',
  tools: [lookupOrder],
  limits: { steps: 4 },
  prompt: ({ customer, message }) => `Customer ${customer} writes:\n\n${message}`,
});

/**
 * A triage agent that hands the two halves of a message to two specialists at once (the
 * `delegate` tool), waits for both while parked, and merges their answers into one reply.
 */
export const triage = defineAgent({
  name: 'triage',
  description: 'Splits a customer message between the billing and shipping specialists, in parallel, and merges their answers.',
  input: question,
  exampleInput: { customer: 'Ada', message: 'I was charged twice for order A-1001, and where is it anyway?' },
  system: 'You are the triage desk of a coffee equipment shop. Delegate the billing and the shipping parts of the message to the specialists in one delegate call, then merge their answers into one short reply.',
  delegates: ['billing-specialist', 'shipping-specialist'],
  limits: { steps: 8 },
  prompt: ({ customer, message }) => `Customer ${customer} writes:\n\n${message}`,
});
