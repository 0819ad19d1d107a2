/**
 * Model routing: a step's role picks the model and its `max_tokens`.
 */
import { z } from 'zod';

/** A model and the most output tokens a call to it may ask for. */
export const routeSchema = z
  .object({
    model: z.string().min(1),
    maxTokens: z.number().int().positive(),
  })
  .strict();
export type Route = z.infer<typeof routeSchema>;

/** The routing table: a default route and per-role overrides. */
export const routingSchema = z
  .object({
    /** @default { model: "claude-sonnet-4-6", maxTokens: 4096 } */
    default: routeSchema.default({ model: 'claude-sonnet-4-6', maxTokens: 4096 }),
    /**
     * Role -> route; a role not listed takes `default`.
     * @default { plan: { model: "claude-opus-4-6", maxTokens: 8192 }, format: { model: "claude-haiku-4-5", maxTokens: 2048 } }
     */
    roles: z.record(z.string().min(1), routeSchema).default({
      plan: { model: 'claude-opus-4-6', maxTokens: 8192 },
      format: { model: 'claude-haiku-4-5', maxTokens: 2048 },
    }),
  })
  .strict();
export type Routing = z.output<typeof routingSchema>;
export type RoutingInput = z.input<typeof routingSchema>;

/**
 * The route of `role`, with `maxTokens` clamped to `clamp` when given:
 * the effective `max_tokens` is `min(route.maxTokens, clamp)`.
 */
export function resolveRoute(routing: Routing, role: string, clamp?: number): Route {
  const route = Object.hasOwn(routing.roles, role) ? routing.roles[role]! : routing.default;
  return { model: route.model, maxTokens: clamp === undefined ? route.maxTokens : Math.min(route.maxTokens, clamp) };
}

/** Every model the table can route to. */
export function routedModels(routing: Routing): string[] {
  return [...new Set([routing.default.model, ...Object.values(routing.roles).map((r) => r.model)])];
}
