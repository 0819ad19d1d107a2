/**
 * The tools of the billing desk of the eval examples. In a module of their own, importing little,
 * because `issue_refund` runs isolated: every call's worker thread loads this module.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { defineTool } from '../../../sandbox/tool.ts';

const INVOICES = new Map([
  ['INV-1001', { invoiceId: 'INV-1001', customer: 'Ada', amountUsd: 89, status: 'paid twice' }],
  ['INV-1002', { invoiceId: 'INV-1002', customer: 'Grace', amountUsd: 45, status: 'paid' }],
  ['INV-1003', { invoiceId: 'INV-1003', customer: 'Linus', amountUsd: 240, status: 'paid twice' }],
]);

/** Where refunds are recorded: the stand-in for a payment provider (one JSON line per refund). */
const refundsFile = () => path.join(process.env.BILLING_DESK_DIR ?? path.join(tmpdir(), 'troupe-billing-desk'), 'refunds.jsonl');
const refunds = (): Array<{ key: string; refundId: string; invoiceId: string; amountUsd: number }> =>
  existsSync(refundsFile()) ? readFileSync(refundsFile(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];

export const findInvoice = defineTool({
  name: 'find_invoice',
  description: 'Look up an invoice by its id (for example "INV-1001"): customer, amount and payment status.',
  input: z.object({ invoiceId: z.string().regex(/^INV-\d+$/) }),
  output: z.object({ invoiceId: z.string(), customer: z.string(), amountUsd: z.number(), status: z.string() }),
  validate: ({ invoiceId }) => (INVOICES.has(invoiceId) ? undefined : `invoice ${invoiceId} does not exist`),
  run: async ({ invoiceId }) => INVOICES.get(invoiceId)!,
});

/** The customer's latest email about an invoice: written by someone outside, so untrusted. */
export const readCustomerEmail = defineTool({
  name: 'read_customer_email',
  description: "Read the customer's latest email about an invoice.",
  input: z.object({ invoiceId: z.string() }),
  output: z.object({ from: z.string(), body: z.string() }),
  untrusted: true,
  run: async ({ invoiceId }) => ({ from: INVOICES.get(invoiceId)?.customer ?? 'unknown', body: `Hello, I think I was charged twice for ${invoiceId}. Can you check?` }),
});

/** Refunds money: cannot be undone. Runs on a tool worker, in a worker thread. */
export const issueRefund = defineTool({
  name: 'issue_refund',
  description: 'Refund an amount of an invoice to the customer. Cannot be undone.',
  input: z.object({ invoiceId: z.string().regex(/^INV-\d+$/), amountUsd: z.number().positive() }),
  output: z.object({ refundId: z.string(), amountUsd: z.number() }),
  reversibility: 'irreversible',
  isolation: 'thread',
  timeoutMs: 1_500,
  amount: ({ amountUsd }) => amountUsd,
  validate: ({ invoiceId, amountUsd }) => {
    const invoice = INVOICES.get(invoiceId);
    if (!invoice) return `invoice ${invoiceId} does not exist`;
    return amountUsd > invoice.amountUsd ? `a refund of ${amountUsd} USD is more than invoice ${invoiceId} (${invoice.amountUsd} USD)` : undefined;
  },
  reconcile: async (key) => {
    const done = refunds().find((r) => r.key === key);
    return done ? { happened: true, output: { refundId: done.refundId, amountUsd: done.amountUsd } } : { happened: false };
  },
  run: async ({ invoiceId, amountUsd }, { key }) => {
    const refundId = `RF-${refunds().length + 5001}`;
    mkdirSync(path.dirname(refundsFile()), { recursive: true });
    appendFileSync(refundsFile(), `${JSON.stringify({ key, refundId, invoiceId, amountUsd })}\n`);
    return { refundId, amountUsd };
  },
});
