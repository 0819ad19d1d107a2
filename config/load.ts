import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { configSchema, type TroupeConfig, type TroupeConfigInput } from './schema.ts';

/** Config file names looked up, in order, in the working directory. */
export const CONFIG_FILES = ['troupe.config.json', 'troupe.config.ts'] as const;

export interface LoadConfigOptions {
  /** Directory searched for a config file. @default process.cwd() */
  cwd?: string;
  /** Explicit config file path; an error if it does not exist. */
  file?: string;
  /** Environment variables consulted. @default process.env */
  env?: Record<string, string | undefined>;
  /** Applied last, over file and environment. */
  overrides?: TroupeConfigInput;
}

/** Validated, frozen configuration and where it came from. */
export interface LoadedConfig {
  config: TroupeConfig;
  /** Absolute path of the file read, if any. */
  file: string | undefined;
  /** Directory that relative paths in the config are resolved against. */
  baseDir: string;
  /** Absolute paths of the agent modules listed under `agents`. */
  agentModules: string[];
}

/**
 * Loads configuration from the config file (if any), then the environment, then `overrides`,
 * and validates it once. Invalid configuration throws a {@link ConfigError} naming every bad
 * field and what it expects.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const file = findConfigFile(cwd, options.file);
  const fromFile = file ? await readConfigFile(file) : {};
  const merged = deepMerge(deepMerge(fromFile, fromEnv(env)), options.overrides ?? {});
  const config = compileConfig(merged, file ?? 'configuration');
  const baseDir = file ? path.dirname(file) : cwd;
  return {
    config,
    file,
    baseDir,
    agentModules: config.agents.map((p) => path.resolve(baseDir, p)),
  };
}

/** Validates a config object and fills defaults; `source` names it in error messages. */
export function compileConfig(input: unknown, source = 'configuration'): TroupeConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    throw new ConfigError(`invalid ${source}:\n${formatIssues(result.error)}`);
  }
  return deepFreeze(result.data);
}

/** One line per problem: `  - host.concurrency: expected number, received string`. */
export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `  - ${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('\n');
}

function findConfigFile(cwd: string, explicit: string | undefined): string | undefined {
  if (explicit) {
    const abs = path.resolve(cwd, explicit);
    if (!existsSync(abs)) throw new ConfigError(`config file ${abs} does not exist`);
    return abs;
  }
  for (const name of CONFIG_FILES) {
    const candidate = path.join(cwd, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

async function readConfigFile(file: string): Promise<unknown> {
  if (file.endsWith('.json')) {
    try {
      return JSON.parse(readFileSync(file, 'utf8'));
    } catch (cause) {
      throw new ConfigError(`${file} is not valid JSON: ${(cause as Error).message}`, { cause });
    }
  }
  try {
    const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
    return mod.default ?? {};
  } catch (cause) {
    throw new ConfigError(`${file} could not be loaded: ${(cause as Error).message}`, { cause });
  }
}

function fromEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const out: Record<string, Record<string, unknown> | unknown> = {};
  const nats: Record<string, unknown> = {};
  if (env.NATS_URL) nats.servers = env.NATS_URL.split(',').map((s) => s.trim()).filter(Boolean);
  if (env.NATS_CREDS) nats.credsFile = env.NATS_CREDS;
  if (env.NATS_USER) nats.user = env.NATS_USER;
  if (env.NATS_PASSWORD) nats.password = env.NATS_PASSWORD;
  if (Object.keys(nats).length) out.nats = nats;
  if (env.TROUPE_PREFIX) out.prefix = env.TROUPE_PREFIX;
  if (env.LOG_LEVEL) out.log = { level: env.LOG_LEVEL };
  const model: Record<string, unknown> = {};
  if (env.ANTHROPIC_BASE_URL) model.baseURL = env.ANTHROPIC_BASE_URL;
  if (env.TROUPE_MODEL_PROVIDER) model.provider = env.TROUPE_MODEL_PROVIDER;
  if (Object.keys(model).length) out.model = model;
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
