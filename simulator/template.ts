/**
 * The scenario template language: `{{path}}` or `{{path|fallback}}`.
 *
 * Paths: `vars.<name>` (a value the script's `extract` regex took from the first user message),
 * `firstUser` (that message's text), `lastToolResult` (the text of the last `tool_result` in the
 * request), `lastToolResult.<a>.<b>` (a field of it parsed as JSON), `turn` (the turn index).
 * An unknown path renders the fallback, or an empty string.
 *
 * In a tool input, a string that is exactly one template takes the value's JSON type (a number stays
 * a number); anything else is string interpolation.
 */

/** What templates can refer to. */
export interface TemplateContext {
  vars: Record<string, string | undefined>;
  firstUser: string;
  lastToolResult: string | undefined;
  turn: number;
}

const TEMPLATE = /\{\{\s*([\w.]+)\s*(?:\|([^}]*))?\}\}/g;
const WHOLE_TEMPLATE = /^\{\{\s*([\w.]+)\s*(?:\|([^}]*))?\}\}$/;

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Resolves a dotted path; `undefined` when any step is missing. */
export function lookup(path: string, context: TemplateContext): unknown {
  const [head, ...rest] = path.split('.');
  let value: unknown;
  switch (head) {
    case 'vars':
      return rest.length === 1 ? context.vars[rest[0]!] : undefined;
    case 'firstUser':
      return rest.length === 0 ? context.firstUser : undefined;
    case 'turn':
      return rest.length === 0 ? context.turn : undefined;
    case 'lastToolResult':
      if (rest.length === 0) return context.lastToolResult;
      value = parseJson(context.lastToolResult);
      break;
    default:
      return undefined;
  }
  for (const key of rest) {
    if (typeof value !== 'object' || value === null || !(key in value)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

const asText = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));

/** Renders every template in a string. */
export function renderText(text: string, context: TemplateContext): string {
  return text.replace(TEMPLATE, (_all, path: string, fallback: string | undefined) => {
    const value = lookup(path, context);
    return value === undefined ? (fallback ?? '') : asText(value);
  });
}

/** Renders templates in every string of a JSON value, keeping the type of whole-string templates. */
export function renderValue(value: unknown, context: TemplateContext): unknown {
  if (typeof value === 'string') {
    const whole = WHOLE_TEMPLATE.exec(value);
    if (whole) {
      const resolved = lookup(whole[1]!, context);
      return resolved === undefined ? (whole[2] ?? '') : resolved;
    }
    return renderText(value, context);
  }
  if (Array.isArray(value)) return value.map((v) => renderValue(v, context));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderValue(v, context)]));
  }
  return value;
}
