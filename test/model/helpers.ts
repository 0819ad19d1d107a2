/**
 * Shared set-up of the model tests: a real simulator on a free port and a real SDK-based client
 * with short timeouts and back-off, so fault tests run in milliseconds.
 */
import { createAnthropicModelClient, type AnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import type { AnthropicModelClientOptions } from '../../actors/model/anthropic-options.ts';
import type { ModelCallRequest, ToolSpec } from '../../actors/model/model-client.ts';
import { startSimulator, type ScenarioInput, type SimulatorHandle } from '../../simulator/index.ts';

export const LOOKUP_ORDER: ToolSpec = {
  name: 'lookup_order',
  description: 'Looks an order up by its id and returns its status.',
  inputSchema: { type: 'object', properties: { orderId: { type: 'string' } }, required: ['orderId'] },
};

export const SUPPORT_SYSTEM = 'You are the ACME support desk. Look orders up before answering.';

/** Turn 0 of a support-desk conversation about `orderId`. */
export function supportRequest(orderId = 'A-1001', extra: Partial<ModelCallRequest> = {}): ModelCallRequest {
  return {
    role: 'agent',
    system: SUPPORT_SYSTEM,
    tools: [LOOKUP_ORDER],
    messages: [{ role: 'user', content: `Hello, where is my order ${orderId}? It is late.` }],
    ...extra,
  };
}

/** A one-script scenario whose single turn replies `text`, with `faults` before it. */
export function faultScenario(faults: NonNullable<ScenarioInput['scripts'][number]['faults']>, text = 'All good.'): ScenarioInput {
  return { name: 'faults', scripts: [{ name: 'main', faults, turns: [{ text }] }] };
}

export const simpleRequest = (text = 'Say something.', extra: Partial<ModelCallRequest> = {}): ModelCallRequest => ({
  role: 'agent',
  system: 'You are a test agent.',
  tools: [],
  messages: [{ role: 'user', content: text }],
  ...extra,
});

/** Fast, deterministic defaults for tests; `random` = 0.5 keeps jitter predictable. */
export function testClient(sim: SimulatorHandle, overrides: AnthropicModelClientOptions = {}): AnthropicModelClient {
  return createAnthropicModelClient({
    apiKey: 'test-key',
    baseURL: sim.url,
    timeoutMs: 2_000,
    maxAttempts: 4,
    backoff: { baseMs: 10, capMs: 40 },
    random: () => 0.5,
    ...overrides,
  });
}

export async function simulator(scenario?: ScenarioInput): Promise<SimulatorHandle> {
  return startSimulator(scenario === undefined ? {} : { scenario });
}

/** Requests the simulator saw for (script, turn). */
export function requestsAt(sim: SimulatorHandle, script: string, turn: number): number {
  return sim.stats().scripts[script]?.turns[String(turn)] ?? 0;
}
