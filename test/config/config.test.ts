import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, compileConfig, loadConfig } from '../../config/index.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'troupe-config-test-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const write = (name: string, content: unknown) => {
  const file = path.join(dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
};

/** The ConfigError thrown by `fn`, failing the test if it does not throw one. */
async function configError(fn: () => unknown): Promise<ConfigError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('compileConfig', () => {
  it('fills every default', () => {
    const c = compileConfig({});
    expect(c.prefix).toBe('troupe');
    expect(c.agents).toEqual([]);
    expect(c.limits).toEqual({ steps: 8, wallClockMs: 90_000, noProgress: 3, onBreach: {} });
    expect(c.host).toEqual({ concurrency: 1000, leaseMs: 30_000, maxDeliver: 10, maxTaskBytes: 256 * 1024, drainTimeoutMs: 10_000, restartIntensity: 3, restartPeriodMs: 60_000, restartBackoffMs: 200, approvalSweepMs: 5_000 });
    expect(c.streams).toEqual({ replicas: 1, eventsMaxAgeMs: 7 * 24 * 3600 * 1000, rejectedMaxAgeMs: 7 * 24 * 3600 * 1000, duplicateWindowMs: 120_000, auditMaxAgeMs: 30 * 24 * 3600 * 1000 });
    expect(c.nats).toEqual({ name: 'troupe' });
    expect(c.embedded).toEqual({ storeDir: '.troupe/nats', port: 0, binary: 'nats-server' });
    expect(c.log.level).toBe('info');
    expect(c.model.provider).toBeUndefined();
  });

  it('takes `inspect: true` as short for enabling the XState inspector', () => {
    expect(compileConfig({ inspect: true }).inspect).toEqual({ enabled: true, port: 0 });
    expect(compileConfig({}).inspect).toEqual({ enabled: false, port: 0 });
  });

  it('keeps given values and fills the rest of the same section', () => {
    const c = compileConfig({ host: { concurrency: 4 }, limits: { steps: 3 } });
    expect(c.host.concurrency).toBe(4);
    expect(c.host.leaseMs).toBe(30_000);
    expect(c.limits).toEqual({ steps: 3, wallClockMs: 90_000, noProgress: 3, onBreach: {} });
  });

  it('returns a deeply frozen object', () => {
    const c = compileConfig({ agents: ['a.ts'] });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.host)).toBe(true);
    expect(Object.isFrozen(c.agents)).toBe(true);
    expect(() => {
      (c.host as { concurrency: number }).concurrency = 1;
    }).toThrow(TypeError);
  });

  it('rejects a bad value with invalid_config, naming the field path and what is expected', async () => {
    const err = await configError(() => compileConfig({ host: { concurrency: 'many' } }));
    expect(err.code).toBe('invalid_config');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/host\.concurrency: .*number/);
    expect(err.toWire()).toEqual({ code: 'invalid_config', message: err.message });
  });

  it('names every bad field, not only the first', async () => {
    const err = await configError(() => compileConfig({ host: { concurrency: 0, leaseMs: 10 }, limits: { steps: 1.5 }, prefix: 'Bad.Prefix' }));
    expect(err.message).toContain('host.concurrency');
    expect(err.message).toContain('host.leaseMs');
    expect(err.message).toContain('limits.steps');
    expect(err.message).toContain('prefix');
    expect(err.message).toContain('a lower-case subject token');
  });

  it('rejects unknown keys at the top level and inside sections', async () => {
    const top = await configError(() => compileConfig({ hosts: { concurrency: 1 } }));
    expect(top.code).toBe('invalid_config');
    expect(top.message).toContain('hosts');
    const nested = await configError(() => compileConfig({ host: { concurency: 1 } }));
    expect(nested.message).toContain('concurency');
    expect(nested.message).toMatch(/^ {2}- host: /m);
  });

  it('rejects values outside their enum or range', async () => {
    expect((await configError(() => compileConfig({ streams: { replicas: 2 } }))).message).toContain('streams.replicas');
    expect((await configError(() => compileConfig({ log: { level: 'loud' } }))).message).toContain('log.level');
    expect((await configError(() => compileConfig({ model: { baseURL: 'not a url' } }))).message).toContain('model.baseURL');
    expect((await configError(() => compileConfig({ embedded: { port: 70_000 } }))).message).toContain('embedded.port');
    expect((await configError(() => compileConfig({ nats: { servers: [''] } }))).message).toContain('nats.servers.0');
  });

  it('names the source in the message', async () => {
    const err = await configError(() => compileConfig({ host: { concurrency: -1 } }, '/etc/troupe.json'));
    expect(err.message).toContain('/etc/troupe.json');
  });

  it('rejects a config that is not an object', async () => {
    expect((await configError(() => compileConfig([]))).code).toBe('invalid_config');
    expect((await configError(() => compileConfig('troupe'))).code).toBe('invalid_config');
  });
});

describe('loadConfig', () => {
  it('gives defaults when there is no file and no environment', async () => {
    const loaded = await loadConfig({ cwd: dir, env: {} });
    expect(loaded.file).toBeUndefined();
    expect(loaded.baseDir).toBe(dir);
    expect(loaded.agentModules).toEqual([]);
    expect(loaded.config.prefix).toBe('troupe');
    expect(loaded.config.limits.steps).toBe(8);
    expect(loaded.config.limits.wallClockMs).toBe(90_000);
    expect(loaded.config.host.leaseMs).toBe(30_000);
    expect(loaded.config.nats.servers).toBeUndefined();
  });

  it('finds troupe.config.json in the working directory and resolves agent modules against it', async () => {
    const file = write('troupe.config.json', { agents: ['./agents/desk.ts'], host: { concurrency: 7 } });
    const loaded = await loadConfig({ cwd: dir, env: {} });
    expect(loaded.file).toBe(file);
    expect(loaded.baseDir).toBe(dir);
    expect(loaded.config.host.concurrency).toBe(7);
    expect(loaded.agentModules).toEqual([path.join(dir, 'agents', 'desk.ts')]);
  });

  it('reads an explicit file relative to cwd and resolves agents relative to that file', async () => {
    const file = write('conf/prod.json', { agents: ['../a.ts', 'b/c.ts'], prefix: 'prod' });
    const loaded = await loadConfig({ cwd: dir, file: 'conf/prod.json', env: {} });
    expect(loaded.file).toBe(file);
    expect(loaded.baseDir).toBe(path.join(dir, 'conf'));
    expect(loaded.config.prefix).toBe('prod');
    expect(loaded.agentModules).toEqual([path.join(dir, 'a.ts'), path.join(dir, 'conf', 'b', 'c.ts')]);
  });

  it('loads a troupe.config.ts default export', async () => {
    write('troupe.config.ts', 'export default { limits: { steps: 5 } };\n');
    const loaded = await loadConfig({ cwd: dir, env: {} });
    expect(loaded.file).toBe(path.join(dir, 'troupe.config.ts'));
    expect(loaded.config.limits.steps).toBe(5);
  });

  it('reads NATS_URL as a comma list, trimming blanks', async () => {
    const loaded = await loadConfig({ cwd: dir, env: { NATS_URL: 'nats://a:4222, nats://b:4222,,' } });
    expect(loaded.config.nats.servers).toEqual(['nats://a:4222', 'nats://b:4222']);
  });

  it('reads LOG_LEVEL, TROUPE_PREFIX, NATS_CREDS/USER/PASSWORD and the model variables', async () => {
    const loaded = await loadConfig({
      cwd: dir,
      env: {
        LOG_LEVEL: 'debug',
        TROUPE_PREFIX: 'staging',
        NATS_CREDS: '/x.creds',
        NATS_USER: 'u',
        NATS_PASSWORD: 'p',
        ANTHROPIC_BASE_URL: 'http://127.0.0.1:9/',
        TROUPE_MODEL_PROVIDER: 'simulator',
      },
    });
    expect(loaded.config.log.level).toBe('debug');
    expect(loaded.config.prefix).toBe('staging');
    expect(loaded.config.nats).toMatchObject({ credsFile: '/x.creds', user: 'u', password: 'p', name: 'troupe' });
    expect(loaded.config.model).toMatchObject({ baseURL: 'http://127.0.0.1:9/', provider: 'simulator' });
  });

  it('rejects an invalid LOG_LEVEL as invalid_config naming log.level', async () => {
    const err = await configError(() => loadConfig({ cwd: dir, env: { LOG_LEVEL: 'chatty' } }));
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain('log.level');
  });

  it('applies file, then environment, then overrides', async () => {
    write('troupe.config.json', {
      prefix: 'fromfile',
      nats: { servers: ['nats://file:4222'], name: 'file-name' },
      log: { level: 'warn', pretty: false },
      host: { concurrency: 2, leaseMs: 5000 },
    });
    const fileOnly = await loadConfig({ cwd: dir, env: {} });
    expect(fileOnly.config.nats.servers).toEqual(['nats://file:4222']);
    expect(fileOnly.config.log).toEqual({ level: 'warn', pretty: false });

    const withEnv = await loadConfig({ cwd: dir, env: { NATS_URL: 'nats://env:4222', LOG_LEVEL: 'error' } });
    expect(withEnv.config.nats.servers).toEqual(['nats://env:4222']);
    // Merged per field: the file's other fields in the same sections survive.
    expect(withEnv.config.nats.name).toBe('file-name');
    expect(withEnv.config.log).toEqual({ level: 'error', pretty: false });
    expect(withEnv.config.prefix).toBe('fromfile');

    const withOverrides = await loadConfig({
      cwd: dir,
      env: { NATS_URL: 'nats://env:4222', LOG_LEVEL: 'error', TROUPE_PREFIX: 'fromenv' },
      overrides: { prefix: 'fromoverride', log: { level: 'silent' }, host: { concurrency: 9 } },
    });
    expect(withOverrides.config.prefix).toBe('fromoverride');
    expect(withOverrides.config.log).toEqual({ level: 'silent', pretty: false });
    expect(withOverrides.config.host).toMatchObject({ concurrency: 9, leaseMs: 5000 });
    expect(withOverrides.config.nats.servers).toEqual(['nats://env:4222']);
  });

  it('names the file and the field when the file is invalid', async () => {
    const file = write('troupe.config.json', { host: { concurrency: 'lots' }, extra: true });
    const err = await configError(() => loadConfig({ cwd: dir, env: {} }));
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain(file);
    expect(err.message).toContain('host.concurrency');
    expect(err.message).toContain('extra');
  });

  it('rejects an invalid value that only an override introduces', async () => {
    const err = await configError(() => loadConfig({ cwd: dir, env: {}, overrides: { host: { leaseMs: 100 } } }));
    expect(err.message).toContain('host.leaseMs');
  });

  it('fails with invalid_config when an explicit file does not exist', async () => {
    const err = await configError(() => loadConfig({ cwd: dir, file: 'missing.json', env: {} }));
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain(path.join(dir, 'missing.json'));
    expect(err.message).toContain('does not exist');
  });

  it('fails with invalid_config when the file is not valid JSON', async () => {
    const file = write('troupe.config.json', '{ "prefix": "x", }');
    const err = await configError(() => loadConfig({ cwd: dir, env: {} }));
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain(file);
    expect(err.message).toContain('not valid JSON');
    expect(err.cause).toBeInstanceOf(SyntaxError);
  });

  it('fails with invalid_config when a .ts config cannot be loaded', async () => {
    write('troupe.config.ts', 'throw new Error("config module exploded");\n');
    const err = await configError(() => loadConfig({ cwd: dir, env: {} }));
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain('config module exploded');
  });

  it('prefers troupe.config.json over troupe.config.ts', async () => {
    write('troupe.config.json', { limits: { steps: 2 } });
    write('troupe.config.ts', 'export default { limits: { steps: 3 } };\n');
    const loaded = await loadConfig({ cwd: dir, env: {} });
    expect(loaded.file).toBe(path.join(dir, 'troupe.config.json'));
    expect(loaded.config.limits.steps).toBe(2);
  });
});
