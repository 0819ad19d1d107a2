/**
 * Finding and reading scenario files: YAML (`.yaml`, `.yml`) or JSON (`.json`), validated with
 * {@link evalScenarioSchema}. A bad file never throws out of here: it comes back as a
 * {@link ScenarioFileError} that names the file, each offending field's path and line, and what
 * to write instead.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isMap, isNode, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { evalScenarioSchema, type EvalScenario } from './scenario.ts';

/** Extensions of scenario files. */
export const SCENARIO_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

/** One problem of a scenario file, at a field path (and line, when known). */
export interface ScenarioProblem {
  /** Dotted field path, `(file)` for the file as a whole. */
  path: string;
  line?: number;
  column?: number;
  message: string;
}

/** A scenario file that cannot be run as written. */
export class ScenarioFileError extends TerminalError {
  override readonly name = 'ScenarioFileError';
  constructor(
    readonly file: string,
    readonly problems: ScenarioProblem[],
  ) {
    super(ErrorCode.invalidConfig, `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${problems.map((p) => `  ${formatProblem(file, p)}`).join('\n')}`);
  }
}

/** `file:line:col: path: message`, the way compilers print. */
export function formatProblem(file: string, p: ScenarioProblem): string {
  const where = p.line !== undefined ? `${file}:${p.line}${p.column !== undefined ? `:${p.column}` : ''}` : file;
  return `${where}: ${p.path === '(file)' ? '' : `${p.path}: `}${p.message}`;
}

/** A validated scenario, with where it came from. */
export interface LoadedScenario {
  file: string;
  /** The file's directory: agent modules are resolved against it. */
  dir: string;
  scenario: EvalScenario & { name: string };
  /** Line of a field path in the file (of its key, with `key`), for problems found later (unknown agent or tool). */
  locate(path: PropertyKey[], key?: boolean): { line: number; column: number } | undefined;
}

/**
 * The scenario files named on the command line: files as given (whatever their extension), and
 * in each directory its `.yaml`, `.yml` and `.json` files (not its subdirectories), by name.
 * `exclude` (absolute paths, such as the baseline file) are left out. A path that does not exist
 * comes back as an error for that path.
 */
export function findScenarioFiles(paths: readonly string[], exclude: readonly string[] = []): Array<{ file: string } | { file: string; error: ScenarioFileError }> {
  const out: Array<{ file: string } | { file: string; error: ScenarioFileError }> = [];
  const skip = new Set(exclude.map((p) => path.resolve(p)));
  for (const given of paths) {
    const abs = path.resolve(given);
    let stat;
    try {
      stat = statSync(abs);
    } catch {
      out.push({ file: given, error: new ScenarioFileError(given, [{ path: '(file)', message: 'no such file or directory; name a scenario file (.yaml, .yml, .json) or a directory of them' }]) });
      continue;
    }
    if (!stat.isDirectory()) {
      if (!skip.has(abs)) out.push({ file: given });
      continue;
    }
    const names = readdirSync(abs)
      .filter((n) => SCENARIO_EXTENSIONS.some((ext) => n.endsWith(ext)) && !n.startsWith('.'))
      .sort();
    for (const n of names) {
      const file = path.join(given, n);
      if (!skip.has(path.resolve(file)) && statSync(file).isFile()) out.push({ file });
    }
  }
  return out;
}

/** Reads and validates one scenario file. Never throws: a bad file is returned as its error. */
export function loadScenarioFile(file: string): LoadedScenario | ScenarioFileError {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return new ScenarioFileError(file, [{ path: '(file)', message: `cannot be read: ${(err as Error).message}` }]);
  }
  const lines = new LineCounter();
  const json = file.endsWith('.json');
  let doc: Document.Parsed | undefined;
  let data: unknown;
  if (json) {
    try {
      data = JSON.parse(text);
    } catch (err) {
      return new ScenarioFileError(file, [{ path: '(file)', message: `is not valid JSON: ${(err as Error).message}` }]);
    }
    // YAML reads JSON too: parsed again only to find the line of a field.
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  } else {
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length) {
      return new ScenarioFileError(
        file,
        doc.errors.map((e) => ({
          path: '(file)',
          ...(e.linePos ? { line: e.linePos[0].line, column: e.linePos[0].col } : {}),
          message: `is not valid YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:$/, '')}`,
        })),
      );
    }
    data = doc.toJS({ maxAliasCount: 100 });
  }
  const locate = (p: PropertyKey[], key?: boolean) => locateIn(doc, lines, p, key);
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return new ScenarioFileError(file, [{ path: '(file)', message: 'a scenario is a mapping with at least `agent`, `input`, `model` and `expect`; see examples/evals/' }]);
  }
  const parsed = evalScenarioSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) {
    return new ScenarioFileError(file, problemsOf(parsed.error, locate));
  }
  const name = parsed.data.name ?? path.basename(file).replace(/\.(ya?ml|json)$/, '');
  return { file, dir: path.dirname(path.resolve(file)), scenario: { ...parsed.data, name }, locate };
}

/** Problems of a zod error, one per leaf issue, with lines, in file order. */
export function problemsOf(error: z.ZodError, locate: (path: PropertyKey[], key?: boolean) => { line: number; column: number } | undefined): ScenarioProblem[] {
  const problems = leafIssues(error.issues).map((issue) => {
    // An unknown field is found at its own line, not its parent's.
    const at = issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined ? locate([...issue.path, issue.keys[0]], true) : locate(issue.path);
    return { path: issue.path.length ? issue.path.map(String).join('.') : '(file)', ...(at ? { line: at.line, column: at.column } : {}), message: messageOf(issue) };
  });
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      const key = `${p.path}\u0000${p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

type Issue = z.core.$ZodIssue;

/**
 * The issues to show: a union's failure is shown as the failures of the branch that got
 * furthest (the one whose issues lie deepest), since "invalid input" helps nobody.
 */
function leafIssues(issues: readonly Issue[], prefix: PropertyKey[] = []): Array<Issue & { path: PropertyKey[] }> {
  const out: Array<Issue & { path: PropertyKey[] }> = [];
  for (const issue of issues) {
    const at = [...prefix, ...issue.path];
    if (issue.code === 'invalid_union' && issue.errors.length > 0 && issue.errors.every((b) => b.length === 1 && b[0]!.path.length === 0 && (b[0]!.code === 'invalid_type' || b[0]!.code === 'invalid_value'))) {
      // Every branch refused the value itself: say what any of them would have taken.
      const wanted = issue.errors.map((b) => {
        const only = b[0]!;
        return only.code === 'invalid_type' ? only.expected : only.code === 'invalid_value' ? only.values.map((v) => JSON.stringify(v)).join(' or ') : '?';
      });
      out.push({ ...issue, path: at, message: `expected ${wanted.join(' or ')}` } as Issue & { path: PropertyKey[] });
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const depth = (branch: readonly Issue[]) => Math.max(...branch.map((i) => i.path.length + (i.code === 'invalid_type' || i.code === 'invalid_value' ? 0 : 0.5)));
      const best = [...issue.errors].sort((a, b) => depth(b) - depth(a))[0]!;
      if (depth(best) > 0) {
        out.push(...leafIssues(best, at));
        continue;
      }
    }
    out.push({ ...issue, path: at } as Issue & { path: PropertyKey[] });
  }
  return out;
}

function messageOf(issue: Issue & { path: PropertyKey[] }): string {
  const field = String(issue.path.at(-1) ?? '');
  if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) {
    return `required field is missing: write \`${field}: <${issue.expected}>\``;
  }
  if (issue.code === 'invalid_union' && 'note' in issue && issue.note === 'No matching discriminator') {
    return `unknown ${field || 'type'}; write one of: ${(issue as { options?: unknown[] }).options?.map(String).join(', ')}`;
  }
  if (issue.code === 'unrecognized_keys') return issue.message;
  const received = (issue as { input?: unknown }).input;
  if (issue.code === 'invalid_union' && issue.message.startsWith('expected ')) return `${issue.message}, not ${describe(received)}`;
  return issue.message.replace(/^Invalid input: /, '').replace(/^Invalid option: /, '');
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'a mapping' : `${typeof value} ${JSON.stringify(value)}`;
}

/** Line and column (1-based) of the node at `p` (of its key, with `key`), or of its nearest ancestor that exists. */
function locateIn(doc: Document.Parsed | undefined, lines: LineCounter, p: PropertyKey[], key = false): { line: number; column: number } | undefined {
  if (!doc) return undefined;
  if (key && p.length) {
    const parent = p.length > 1 ? doc.getIn(p.slice(0, -1).map(String), true) : doc.contents;
    const pair = isMap(parent) ? parent.items.find((item) => isScalar(item.key) && String(item.key.value) === String(p.at(-1))) : undefined;
    if (pair && isNode(pair.key) && pair.key.range) {
      const pos = lines.linePos(pair.key.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  for (let n = p.length; n >= 0; n--) {
    const keys = p.slice(0, n).map((k) => (typeof k === 'symbol' ? String(k) : k));
    const node = keys.length ? doc.getIn(keys, true) : doc.contents;
    if (isNode(node) && node.range) {
      const pos = lines.linePos(node.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return undefined;
}
