/**
 * Sandbox escape attempts through the real tool worker: each attempt is model-written code sent
 * as a real NATS request on `<prefix>.tools.run_javascript` to an in-process {@link ToolWorker},
 * so it crosses the whole path a model's call takes (dispatch schema, effect ledger,
 * `executeTool`, the bwrap runner's warm pool, output redaction and cap, the wire reply).
 *
 * Every attempt proves that it ran (a value or a specific error from inside the sandbox), and is
 * checked twice: from the reply (a typed error, or a result saying the attempt failed), and from
 * the host where the host can see the effect (files, connections, messages, processes, the
 * environment). After every attempt the worker must still answer a normal call.
 *
 * The limits are the tool's own (`sandbox/tools/run-javascript.ts`): 256 MiB memory, 10 s CPU,
 * 10 s wall clock, 256 KiB output, and the sandbox defaults for the rest (32 tasks, 64 open
 * files, 16 MiB per file, 64 MiB scratch).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ToolWorker } from '../../actors/tool-worker.ts';
import { compileConfig } from '../../config/load.ts';
import { connectNats } from '../../runtime/connection.ts';
import { subjects } from '../../runtime/subjects.ts';
import { toolReplySchema, type ToolReply } from '../../runtime/wire.ts';
import { runJavaScriptTool } from '../../sandbox/tools/run-javascript.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { bwrapSkipReason, eventually, hostCommandLines, hostDir, marker, processesInPidNamespace, writeSecret } from '../sandbox/escape-helpers.ts';

const skipReason = await bwrapSkipReason();
const asRoot = process.getuid?.() === 0;
const PREFIX = 'wesc';
const TOOL = runJavaScriptTool.name;
/** The tool's limits, as the assertions below rely on them. */
const MEMORY_BYTES = 256 * 1024 * 1024;
const OUTPUT_BYTES = 256 * 1024;
const WALL_CLOCK_MS = 10_000;
const OPEN_FILES = 64;
const FILE_SIZE_BYTES = 16 * 1024 * 1024;
const SCRATCH_BYTES = 64 * 1024 * 1024;
const PROCESSES = 32;
/** What the JavaScript sandbox's environment holds, and nothing else. */
const CLEAN_ENV = ['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR', 'TZ'];

/** The output of `run_javascript` as the worker returns it. */
interface RunOutput {
  value: unknown;
  valueFrom: string;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** What `spawnSync` gave the sandboxed code. */
interface Spawned {
  status: number | null;
  stderr: string;
}

interface Answer {
  reply: ToolReply;
  /** The reply exactly as it came over NATS, for leak checks that redaction must not hide. */
  raw: string;
  ms: number;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as { port: number }).port));
  });
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe.skipIf(skipReason !== undefined)(
  skipReason === undefined ? 'sandbox escapes through the tool worker' : `sandbox escapes through the tool worker (skipped: ${skipReason})`,
  { timeout: 30_000 },
  () => {
    const toolSubject = subjects(PREFIX).tool(TOOL);
    const secretCanary = marker('SECRETCANARY');
    const plainCanary = marker('PLAINCANARY');
    const secretText = marker('HOSTSECRET');
    let nats: NatsTestContext;
    let workerNc: NatsConnection;
    let worker: ToolWorker;
    let seq = 0;
    // World-readable and world-writable host directories, in the host /tmp and outside it: only the sandbox can keep the code out.
    let tmpSecrets: ReturnType<typeof hostDir>;
    let outsideTmp = '';
    let secretFile = '';

    async function call(code: string, input?: unknown, timeout = 30_000): Promise<Answer> {
      const key = `wesc-${process.pid}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;
      const dispatch = { v: 1, key, taskId: 'wesc-task', tool: TOOL, args: input === undefined ? { code } : { code, input } };
      const t0 = Date.now();
      const m = await nats.nc.request(toolSubject, JSON.stringify(dispatch), { timeout });
      const raw = m.string();
      return { reply: toolReplySchema.parse(JSON.parse(raw)), raw, ms: Date.now() - t0 };
    }

    /** The run's output of a call that must have succeeded. */
    function ok(answer: Answer): RunOutput {
      expect(answer.reply, answer.raw.slice(0, 2000)).toMatchObject({ ok: true, replayed: false });
      return (answer.reply as Extract<ToolReply, { ok: true }>).result as RunOutput;
    }

    /** The wire error of a call that must have failed, not retryable. */
    function failed(answer: Answer): { code: string; message: string } {
      expect(answer.reply, answer.raw.slice(0, 2000)).toMatchObject({ ok: false, retryable: false });
      return (answer.reply as Extract<ToolReply, { ok: false }>).error;
    }

    beforeAll(async () => {
      // Set before the worker starts, as a deployment's secrets would be.
      process.env.TROUPE_CANARY_SECRET = secretCanary;
      process.env.TROUPE_CANARY_PLAIN = plainCanary;
      tmpSecrets = hostDir('troupe-wesc-secrets-', 0o777);
      outsideTmp = mkdtempSync(join(existsSync('/var/tmp') ? '/var/tmp' : process.cwd(), 'troupe-wesc-'));
      chmodSync(outsideTmp, 0o777);
      secretFile = writeSecret(tmpSecrets.path, 'secret.txt', secretText);
      nats = await startNats();
      workerNc = await connectNats({ servers: [nats.url], name: 'wesc-worker' });
      worker = new ToolWorker({ nc: workerNc, config: compileConfig({ prefix: PREFIX }), tools: [runJavaScriptTool], logger: pino({ level: 'silent' }) });
      await worker.start();
      // The worker's subscriptions reach the server before the first request does.
      await workerNc.flush();
    });

    afterAll(async () => {
      await worker?.close(0);
      await workerNc?.close();
      await nats?.close();
      delete process.env.TROUPE_CANARY_SECRET;
      delete process.env.TROUPE_CANARY_PLAIN;
      tmpSecrets?.[Symbol.dispose]();
      if (outsideTmp) rmSync(outsideTmp, { recursive: true, force: true });
    });

    // Whatever the attempt did, the test process, the NATS server and the worker are all still there.
    afterEach(async () => {
      expect(() => process.kill(nats.server.pid, 0)).not.toThrow();
      expect(workerNc.isClosed()).toBe(false);
      expect(ok(await call('return 1 + 1')).value).toBe(2);
    });

    describe('host secrets', () => {
      it('1. cannot read /etc/shadow', async () => {
        const out = ok(await call(`const fs = require('fs'); try { return fs.readFileSync('/etc/shadow', 'utf8'); } catch (e) { return { code: e.code, etc: fs.readdirSync('/etc').sort() }; }`));
        expect(out.value).toEqual({ code: 'ENOENT', etc: ['alternatives', 'ld.so.cache'] });
        if (asRoot) {
          const hostShadowHead = readFileSync('/etc/shadow', 'utf8').split('\n')[0]!;
          expect(hostShadowHead.length).toBeGreaterThan(0);
          expect(JSON.stringify(out)).not.toContain(hostShadowHead);
        }
      });

      it("2. cannot read the worker's environment (canary variables), by any route", async () => {
        expect(process.env.TROUPE_CANARY_SECRET).toBe(secretCanary);
        const answer = await call(
          `const fs = require('fs');
           const read = (p) => { try { return fs.readFileSync(p, 'latin1'); } catch (e) { return e.code; } };
           const dump = JSON.stringify({ env: process.env, self: read('/proc/self/environ'), init: read('/proc/1/environ'), host: read('/proc/' + input + '/environ') });
           // Encoded, so that output redaction cannot be what hides a leak.
           return { keys: Object.keys(process.env).sort(), host: read('/proc/' + input + '/environ'), b64: Buffer.from(dump).toString('base64') };`,
          process.pid,
        );
        const value = ok(answer).value as { keys: string[]; host: string; b64: string };
        expect(value.keys).toEqual(CLEAN_ENV);
        expect(value.host).toBe('ENOENT');
        const decoded = Buffer.from(value.b64, 'base64').toString('latin1');
        expect(decoded).toContain('PATH=/usr/local/bin:/usr/bin:/bin'); // the dump really holds the sandbox's environ
        for (const leak of [secretCanary, plainCanary, 'TROUPE_CANARY', 'NODE_EXTRA_CA_CERTS', 'VITEST']) expect(decoded).not.toContain(leak);
        expect(answer.raw).not.toContain(plainCanary);
        expect(answer.raw).not.toContain('REDACTED:TROUPE_CANARY_SECRET');
      });

      it('3. cannot read ~/.ssh, /root, /home, the project or a world-readable host file', async () => {
        const paths = ['/root', '/root/.ssh', '/root/.ssh/id_rsa', '/home', process.cwd(), join(process.cwd(), 'troupe.config.json'), nats.storeDir, secretFile];
        const out = ok(
          await call(
            `const fs = require('fs');
             const home = require('os').homedir();
             const r = {};
             for (const p of input) { try { r[p] = fs.statSync(p).isDirectory() ? fs.readdirSync(p) : fs.readFileSync(p, 'utf8'); } catch (e) { r[p] = e.code; } }
             let required; try { require(input[4] + '/config/load.ts'); required = 'LOADED'; } catch (e) { required = e.code; }
             return { home, homeEntries: fs.readdirSync(home), r, required };`,
            paths,
          ),
        );
        expect(out.value).toEqual({ home: '/tmp', homeEntries: [], r: Object.fromEntries(paths.map((p) => [p, 'ENOENT'])), required: 'MODULE_NOT_FOUND' });
        expect(JSON.stringify(out)).not.toContain(secretText);
        expect(readFileSync(secretFile, 'utf8')).toBe(secretText); // the host file is really there and readable
      });

      it("4. /proc/1/environ is empty and /proc/self/mountinfo names no host path beyond the system directories", async () => {
        const out = ok(
          await call(`const fs = require('fs');
            return { environ: fs.readFileSync('/proc/1/environ', 'latin1'), mountinfo: fs.readFileSync('/proc/self/mountinfo', 'utf8'),
                     pids: fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)) };`),
        );
        const value = out.value as { environ: string; mountinfo: string; pids: string[] };
        expect(value.environ).toBe('');
        const lines = value.mountinfo.trim().split('\n');
        expect(lines.length).toBeGreaterThan(5);
        const roots = lines.map((l) => l.split(' ')[3]!);
        const mountPoints = lines.map((l) => l.split(' ')[4]!);
        // Host paths a mount could expose are only the read-only system ones.
        for (const root of roots) expect(root).toMatch(/^(\/|\/newroot|\/usr|\/etc\/ld\.so\.cache|\/etc\/alternatives|\/(null|zero|full|random|urandom|tty)|\/(bin|sbin|lib|lib32|lib64|libx32))$/);
        for (const point of mountPoints) expect(point).toMatch(/^\/(usr|etc\/ld\.so\.cache|etc\/alternatives|proc|dev(\/[a-z]+)?|tmp|bin|sbin|lib|lib32|lib64|libx32)?$/);
        for (const hostPath of [process.cwd(), nats.storeDir, tmpSecrets.path, outsideTmp, '/root', '/home', '/work']) expect(value.mountinfo).not.toContain(hostPath);
        expect(value.mountinfo).toMatch(/ \/usr ro,nosuid,nodev/);
        expect(value.pids).toEqual(['1', '2']); // bwrap's init and the code's node: no host process is visible
      });
    });

    describe('writes and mounts', () => {
      it('5. cannot write to a world-writable host directory outside /tmp, nor one inside the host /tmp', async () => {
        const name = marker('pwned');
        const out = ok(
          await call(
            `const fs = require('fs'); const r = {};
             for (const dir of input.dirs) {
               try { fs.writeFileSync(dir + '/' + input.name, 'pwned'); r[dir] = 'WROTE'; } catch (e) { r[dir] = e.code; }
               try { fs.mkdirSync(dir, { recursive: true }); fs.writeFileSync(dir + '/' + input.name, 'pwned'); r[dir] += ',' + (dir.startsWith('/tmp/') ? 'scratch' : 'WROTE'); } catch (e) { r[dir] += ',' + e.code; }
             }
             return r;`,
            { dirs: [outsideTmp, tmpSecrets.path], name },
          ),
        );
        // Outside /tmp the root is a read-only tmpfs; the host /tmp is not the sandbox's /tmp (a mkdir lands in scratch).
        expect(out.value).toEqual({ [outsideTmp]: expect.stringMatching(/^ENOENT,(EROFS|ENOENT)$/), [tmpSecrets.path]: 'ENOENT,scratch' });
        expect(readdirSync(outsideTmp)).toEqual([]);
        expect(readdirSync(tmpSecrets.path)).toEqual(['secret.txt']);
        expect(existsSync(join(tmpdir(), name))).toBe(false);
      });

      it('6. cannot write to /etc, /usr or /, nor replace /etc/passwd', async () => {
        const name = marker('troupe-wesc-etc');
        const passwdBefore = sha256('/etc/passwd');
        const out = ok(
          await call(
            `const fs = require('fs'); const r = {};
             for (const p of ['/etc/' + input, '/etc/passwd', '/usr/' + input, '/usr/bin/' + input, '/' + input]) {
               try { fs.appendFileSync(p, 'pwned:x:0:0::/:/bin/sh\\n'); r[p] = 'WROTE'; } catch (e) { r[p] = e.code; }
             }
             return r;`,
            name,
          ),
        );
        expect(Object.values(out.value as object)).toEqual(['EROFS', 'EROFS', 'EROFS', 'EROFS', 'EROFS']);
        for (const p of [`/etc/${name}`, `/usr/${name}`, `/usr/bin/${name}`, `/${name}`]) expect(existsSync(p)).toBe(false);
        expect(sha256('/etc/passwd')).toBe(passwdBefore);
      });

      it('7. cannot remount / or /usr read-write with mount(8), nor from a new namespace', async () => {
        const name = marker('troupe-wesc-remount');
        const out = ok(
          await call(
            `const cp = require('child_process'), fs = require('fs');
             const run = (cmd, args) => { const r = cp.spawnSync(cmd, args, { encoding: 'utf8' }); return { status: r.status, stderr: r.stderr }; };
             const r = { root: run('mount', ['-o', 'remount,rw', '/']), usr: run('mount', ['-o', 'remount,rw', '/usr']),
                         unshare: run('unshare', ['-rm', 'mount', '-o', 'remount,rw', '/usr']) };
             try { fs.writeFileSync('/usr/' + input, 'pwned'); r.write = 'WROTE'; } catch (e) { r.write = e.code; }
             r.usrMount = fs.readFileSync('/proc/self/mounts', 'utf8').split('\\n').find((l) => l.split(' ')[1] === '/usr');
             return r;`,
            name,
          ),
        );
        const value = out.value as { root: Spawned; usr: Spawned; unshare: Spawned; write: string; usrMount: string };
        expect(value.root.status).toBe(32);
        expect(value.usr.status).toBe(32);
        expect(value.usr.stderr).toMatch(/must be superuser|permission denied|not permitted/i);
        expect(value.unshare.status).not.toBe(0);
        expect(value.unshare.stderr).toMatch(/Operation not permitted/);
        expect(value.write).toBe('EROFS');
        expect(value.usrMount).toMatch(/ ro,/);
        expect(existsSync(`/usr/${name}`)).toBe(false);
      });

      it('8. symlinks in scratch resolve inside the sandbox, for reads and writes', async () => {
        const name = marker('via-link');
        const out = ok(
          await call(
            `const fs = require('fs'); const r = {};
             const link = (target, at) => { fs.symlinkSync(target, at); return at; };
             const read = (p) => { try { return fs.readFileSync(p, 'utf8'); } catch (e) { return e.code; } };
             r.secret = read(link(input.secret, '/tmp/s1'));
             r.shadow = read(link('/etc/shadow', '/tmp/s2'));
             r.hostRoot = read(link('/proc/' + input.pid + '/root/etc/shadow', '/tmp/s3'));
             r.initRoot = fs.readdirSync(link('/proc/1/root/../../..', '/tmp/s4')).sort();
             try { fs.writeFileSync(link(input.outside + '/' + input.name, '/tmp/w1'), 'pwned'); r.write = 'WROTE'; } catch (e) { r.write = e.code; }
             try { fs.writeFileSync(link(input.tmpDir + '/' + input.name, '/tmp/w2'), 'pwned'); r.writeTmp = 'WROTE'; } catch (e) { r.writeTmp = e.code; }
             return r;`,
            { secret: secretFile, pid: process.pid, outside: outsideTmp, tmpDir: tmpSecrets.path, name },
          ),
        );
        const value = out.value as Record<string, unknown> & { initRoot: string[] };
        expect(value).toMatchObject({ secret: 'ENOENT', shadow: 'ENOENT', hostRoot: 'ENOENT', write: 'ENOENT', writeTmp: 'ENOENT' });
        expect(value.initRoot).toContain('usr');
        for (const hostOnly of ['root', 'home', 'work', 'var']) expect(value.initRoot).not.toContain(hostOnly);
        expect(JSON.stringify(out)).not.toContain(secretText);
        expect(readdirSync(outsideTmp)).toEqual([]);
        expect(readdirSync(tmpSecrets.path)).toEqual(['secret.txt']);
      });

      it('9. a huge file in /tmp is cut at the file-size limit, and scratch fills at its size, never on the host', async () => {
        const name = marker('troupe-wesc-big');
        const out = ok(
          await call(
            `const fs = require('fs'); const chunk = Buffer.alloc(1 << 20, 120); const r = { written: 0, total: 0 };
             try { const fd = fs.openSync('/tmp/' + input, 'w'); for (let i = 0; i < 100; i++) { fs.writeSync(fd, chunk); r.written += chunk.length; } } catch (e) { r.big = e.code; }
             try { for (let f = 0; f < 10; f++) { fs.writeFileSync('/tmp/' + input + f, Buffer.alloc(15 << 20)); r.total += 15 << 20; } } catch (e) { r.fill = e.code; }
             return r;`,
            name,
          ),
        );
        const value = out.value as { written: number; big: string; total: number; fill: string };
        expect(value.big).toBe('EFBIG');
        expect(value.written).toBeLessThanOrEqual(FILE_SIZE_BYTES);
        expect(value.written).toBeGreaterThan(0);
        expect(value.fill).toBe('ENOSPC');
        expect(value.written + value.total).toBeLessThanOrEqual(SCRATCH_BYTES);
        expect(readdirSync(tmpdir()).filter((f) => f.startsWith(name))).toEqual([]);
      });
    });

    describe('network', () => {
      let server: Server;
      let connections = 0;
      let port = 0;
      const hostAddresses = Object.values(networkInterfaces())
        .flat()
        .filter((i) => i !== undefined && !i.internal && i.family === 'IPv4')
        .map((i) => i!.address);

      beforeAll(async () => {
        server = createServer((socket) => {
          connections += 1;
          socket.destroy();
        });
        port = await listen(server, 0, '0.0.0.0');
      });
      afterAll(() => server?.close());

      const tcp = `const tcp = (host, port) => new Promise((res) => { const s = require('net').connect({ host, port });
        s.on('connect', () => { s.destroy(); res('CONNECTED'); }); s.on('error', (e) => res(e.code)); setTimeout(() => { s.destroy(); res('TIMEOUT'); }, 1500); });`;

      it('10. cannot reach an external address: TCP 1.1.1.1:53 and :443, UDP 1.1.1.1:53, IPv6', async () => {
        const out = ok(
          await call(`${tcp}
            const udp = () => new Promise((res) => { const s = require('dgram').createSocket('udp4');
              s.send('x', 53, '1.1.1.1', (e) => { s.close(); res(e ? e.code : 'SENT'); }); });
            return { tcp53: await tcp('1.1.1.1', 53), tcp443: await tcp('1.1.1.1', 443), udp53: await udp(), v6: await tcp('2606:4700:4700::1111', 443),
                     interfaces: Object.keys(require('os').networkInterfaces()) };`),
        );
        expect(out.value).toEqual({ tcp53: 'ENETUNREACH', tcp443: 'ENETUNREACH', udp53: 'ENETUNREACH', v6: 'ENETUNREACH', interfaces: ['lo'] });
      });

      it('11. cannot reach a host listener on loopback or on the host interface address', async () => {
        const before = connections;
        const out = ok(await call(`${tcp} const r = {}; for (const h of input.hosts) r[h] = await tcp(h, input.port); return r;`, { hosts: ['127.0.0.1', ...hostAddresses], port }));
        expect(out.value).toEqual(Object.fromEntries(['127.0.0.1', ...hostAddresses].map((h) => [h, h === '127.0.0.1' ? 'ECONNREFUSED' : 'ENETUNREACH'])));
        // The listener is real: the host itself reaches it.
        expect(await hostConnect(port)).toBe('CONNECTED');
        expect(connections).toBe(before + 1);
      });

      it("12. cannot reach the test's NATS server on its loopback port (no message gets published)", async () => {
        const natsPort = Number(new URL(nats.url).port);
        const canarySubject = `${PREFIX}.escape.${Math.random().toString(36).slice(2, 8)}`;
        const seen: string[] = [];
        const sub: Subscription = nats.nc.subscribe(`${PREFIX}.escape.>`, { callback: (_err, m) => void seen.push(m.subject) });
        await nats.nc.flush();
        try {
          const out = ok(
            await call(
              `return await new Promise((res) => { const s = require('net').connect({ host: '127.0.0.1', port: input.port });
                 s.on('connect', () => { s.write('CONNECT {"verbose":false}\\r\\nPUB ' + input.subject + ' 6\\r\\npwned!\\r\\nPING\\r\\n'); s.on('data', (d) => { s.destroy(); res('CONNECTED:' + d); }); });
                 s.on('error', (e) => res(e.code)); setTimeout(() => res('TIMEOUT'), 1500); });`,
              { port: natsPort, subject: canarySubject },
            ),
          );
          expect(out.value).toBe('ECONNREFUSED');
          // A message published from the host on the same subject does arrive, so the subscription would have seen one.
          nats.nc.publish(`${canarySubject}.host`, 'ok');
          await nats.nc.flush();
          expect(await eventually(() => seen.length > 0)).toBe(true);
          expect(seen).toEqual([`${canarySubject}.host`]);
        } finally {
          sub.unsubscribe();
        }
      });

      it('13. cannot resolve names, and a DNS server on the host loopback gets no query', async () => {
        let queries = 0;
        const dns: UdpSocket = createSocket('udp4', () => (queries += 1));
        const dnsPort = await new Promise<number>((resolve) => dns.bind(0, '127.0.0.1', () => resolve(dns.address().port)));
        try {
          const out = ok(
            await call(
              `const dns = require('dns');
               const viaHost = new dns.Resolver({ timeout: 300, tries: 1 }); viaHost.setServers(['127.0.0.1:' + input]);
               const external = new dns.Resolver({ timeout: 300, tries: 1 }); external.setServers(['1.1.1.1']);
               const cb = (f) => new Promise((res) => f((e, a) => res(e ? e.code : a)));
               return { lookup: await cb((k) => dns.lookup('example.com', k)), viaHost: await cb((k) => viaHost.resolve4('example.com', k)),
                        external: await cb((k) => external.resolve4('example.com', k)) };`,
              dnsPort,
            ),
          );
          const value = out.value as Record<string, unknown>;
          expect(['EAI_AGAIN', 'ENOTFOUND']).toContain(value.lookup);
          expect(['ECONNREFUSED', 'ETIMEOUT']).toContain(value.viaHost);
          expect(['ECONNREFUSED', 'ETIMEOUT']).toContain(value.external);
          expect(queries).toBe(0);
          // The counter is real: a query from the host does arrive.
          const fromHost = new Resolver({ timeout: 200, tries: 1 });
          fromHost.setServers([`127.0.0.1:${dnsPort}`]);
          await fromHost.resolve4('example.com').catch(() => undefined);
          expect(queries).toBeGreaterThan(0);
        } finally {
          dns.close();
        }
      });
    });

    describe('privileges and other processes', () => {
      it('14. process.setuid(0) fails with a typed error, and the code runs as uid 65534 with no capabilities', async () => {
        const error = failed(await call('process.setuid(0); return process.getuid();'));
        expect(error.code).toBe('tool_failed');
        expect(error.message).toMatch(/^sandboxed code threw Error: (EINVAL|EPERM)/);
        const out = ok(
          await call(`return { uid: process.getuid(), euid: process.geteuid(), status: require('fs').readFileSync('/proc/self/status', 'utf8').split('\\n').filter((l) => /^(Cap(Eff|Prm|Bnd)|NoNewPrivs|Seccomp):/.test(l)) };`),
        );
        const value = out.value as { uid: number; euid: number; status: string[] };
        expect(value.uid).toBe(65534);
        expect(value.euid).toBe(65534);
        expect(value.status).toEqual(expect.arrayContaining(['CapEff:\t0000000000000000', 'CapPrm:\t0000000000000000', 'CapBnd:\t0000000000000000', 'NoNewPrivs:\t1', 'Seccomp:\t2']));
      });

      it('15. ptrace is refused (strace -p 1), host processes cannot be traced or their memory opened', async () => {
        const out = ok(
          await call(
            `const cp = require('child_process'), fs = require('fs');
             const strace = (pid) => { const r = cp.spawnSync('/usr/bin/strace', ['-p', String(pid)], { encoding: 'utf8', timeout: 3000 }); return { status: r.status, stderr: r.stderr, error: r.error && r.error.code }; };
             const open = (p) => { try { fs.closeSync(fs.openSync(p, 'r+')); return 'OPENED'; } catch (e) { return e.code; } };
             const init = fs.readFileSync('/proc/1/status', 'utf8').split('\\n').filter((l) => /^(Name|Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):/.test(l));
             return { init1: strace(1), host: strace(input), hostMem: open('/proc/' + input + '/mem'), init };`,
            process.pid,
          ),
        );
        const value = out.value as { init1: { status: number; stderr: string; error?: string }; host: { status: number; stderr: string }; hostMem: string; init: string[] };
        if (existsSync('/usr/bin/strace')) {
          expect(value.init1.status).not.toBe(0);
          expect(value.init1.stderr).toMatch(/ptrace\(PTRACE_ATTACH, 1\): Operation not permitted/);
          expect(value.host.status).not.toBe(0);
          expect(value.host.stderr).toMatch(new RegExp(`ptrace\\(PTRACE_ATTACH, ${process.pid}\\): (Operation not permitted|No such process)`));
        } else {
          expect(value.init1.error).toBe('ENOENT');
        }
        expect(value.hostMem).toBe('ENOENT');
        // The only other process the code can reach is bwrap's init in the sandbox, with no more privilege than the code itself.
        expect(value.init).toEqual(['Name:\tbwrap', 'Uid:\t65534\t65534\t65534\t65534', 'CapEff:\t0000000000000000', 'CapBnd:\t0000000000000000', 'NoNewPrivs:\t1', 'Seccomp:\t2']);
      });

      it('16. signals cannot reach the worker, the NATS server or a host process of the sandbox uid', async () => {
        const sleeper: ChildProcess = spawn('sleep', ['30'], { stdio: 'ignore', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
        let sleeperExited = false;
        sleeper.on('exit', () => (sleeperExited = true));
        try {
          const out = ok(
            await call(
              `const r = {};
               const kill = (name, pid) => { try { process.kill(pid, 'SIGKILL'); r[name] = 'SENT'; } catch (e) { r[name] = e.code; } };
               r.ppid = process.ppid;
               kill('parent', process.ppid); kill('all', -1); kill('group', -process.ppid);
               for (const [name, pid] of Object.entries(input)) kill(name, pid);
               await new Promise((res) => setTimeout(res, 100));
               return r;`,
              { worker: process.pid, nats: nats.server.pid, sleeper: sleeper.pid },
            ),
          );
          // The parent is the sandbox's own init (pid 1), which ignores SIGKILL from inside its namespace: the code lived to report.
          expect(out.value).toEqual({ ppid: 1, parent: 'SENT', all: 'ESRCH', group: 'ESRCH', worker: 'ESRCH', nats: 'ESRCH', sleeper: 'ESRCH' });
          await new Promise((resolve) => setTimeout(resolve, 100));
          expect(sleeperExited).toBe(false);
          expect(() => process.kill(sleeper.pid!, 0)).not.toThrow();
        } finally {
          sleeper.kill('SIGKILL');
        }
      });

      it('17. code that takes over the sandbox init through /proc/1/mem, so that it ignores its parent\'s death, still dies with the call, and its namespace with it', { skip: process.arch !== 'x64' }, async () => {
        // seccomp denies ptrace and process_vm_writev so that the code cannot take over the sandbox's
        // pid 1, but /proc/1/mem gives the same access (same uid, dumpable). Code injected there clears
        // pid 1's parent-death signal (prctl), and pid 1 runs in a session of its own, so the host's
        // SIGKILL of the bwrap process group alone would leave it running, orphaned on the host with its
        // private /tmp. The host also kills pid 1 by the host pid bwrap reports, and the kernel takes
        // every process of the sandbox's pid namespace with it.
        let survivors: number[] = [];
        try {
          const out = ok(
            await call(`const fs = require('fs');
              const sc = fs.readFileSync('/proc/1/syscall', 'utf8').trim().split(' ');
              const pc = Number(sc[sc.length - 1]);
              // prctl(PR_SET_PDEATHSIG, 0); for (;;) pause();
              const code = Buffer.from('b89d000000bf0100000031f60f05b8220000000f05ebf7', 'hex');
              const fd = fs.openSync('/proc/1/mem', 'r+');
              const wrote = fs.writeSync(fd, code, 0, code.length, pc);
              // Wakes pid 1 out of wait4 (an orphan reparented to it exits), so that it runs the injected code.
              require('child_process').spawnSync('sh', ['-c', 'sleep 0.05 &']);
              await new Promise((res) => setTimeout(res, 300));
              const now = Number(fs.readFileSync('/proc/1/syscall', 'utf8').split(' ')[0]);
              return { syscall: Number(sc[0]), wrote, now, pidns: fs.readlinkSync('/proc/self/ns/pid') };`),
          );
          const value = out.value as { syscall: number; wrote: number; now: number; pidns: string };
          // pid 1 was in wait4, its text was overwritten, and it now runs the injected loop (pause).
          expect(value).toMatchObject({ syscall: 61, wrote: 23, now: 34, pidns: expect.stringMatching(/^pid:\[\d+\]$/) });
          // The namespace's inode is the same on the host: every process of the sandbox is found by it.
          await new Promise((resolve) => setTimeout(resolve, 300));
          survivors = processesInPidNamespace(value.pidns);
          expect(survivors, 'a process of the sandbox outlived its call').toEqual([]);
        } finally {
          for (const pid of survivors) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
        }
      });
    });

    describe('resources', () => {
      it('18. a fork bomb (a background shell bomb and a spawn loop) is capped by the task limit and torn down with the call', async () => {
        const tag = `31.${Math.floor(Math.random() * 1e6)}`;
        const out = ok(
          await call(
            `const cp = require('child_process');
             cp.spawn('sh', ['-c', 'b() { b | b & }; b', input], { detached: true, stdio: 'ignore' }).unref();
             let spawned = 0; const errors = {};
             for (let i = 0; i < 200; i++) {
               try { const c = cp.spawn('sleep', [input], { stdio: 'ignore', detached: true }); c.unref(); c.on('spawn', () => spawned++); c.on('error', (e) => { errors[e.code] = (errors[e.code] || 0) + 1; }); }
               catch (e) { errors[e.code] = (errors[e.code] || 0) + 1; }
             }
             await new Promise((res) => setTimeout(res, 500));
             return { spawned, errors };`,
            tag,
          ),
        );
        const value = out.value as { spawned: number; errors: Record<string, number> };
        expect(value.spawned).toBeLessThan(PROCESSES);
        expect(value.errors.EAGAIN).toBeGreaterThan(200 - PROCESSES);
        // Nothing of the bomb outlives the call on the host.
        expect(await eventually(() => !hostCommandLines().some((line) => line.includes(tag)), 3_000)).toBe(true);
      });

      it('19. a JS heap bomb fails with the typed memory error', async () => {
        const error = failed(await call('const a = []; for (;;) a.push(new Array(1e5).fill({ x: 1 }));'));
        expect(error).toEqual({ code: 'tool_failed', message: `sandboxed run exceeded its memory limit of ${MEMORY_BYTES} bytes` });
      });

      it('20. an off-heap bomb (Buffers) fails with the typed memory error', async () => {
        const error = failed(await call('const a = []; for (;;) a.push(Buffer.alloc(1 << 24, 1));'));
        expect(error).toEqual({ code: 'tool_failed', message: `sandboxed run exceeded its memory limit of ${MEMORY_BYTES} bytes` });
      });

      it('21. a CPU spin is killed at its limit with a typed timeout, and the worker answers other calls meanwhile', async () => {
        const spin = call('for (;;) {}');
        const t0 = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 500));
        const meanwhile = await call('return 40 + 2');
        expect(ok(meanwhile).value).toBe(42);
        expect(Date.now() - t0).toBeLessThan(WALL_CLOCK_MS / 2);
        const spun = await spin;
        // CPU time (10 s, counted from the sandbox's start) and the wall clock (10 s from the hand-over) race.
        expect(failed(spun)).toMatchObject({ code: 'tool_timeout', message: expect.stringMatching(/^sandboxed run exceeded its (wall-clock limit of 10000 ms|CPU limit of 10 s)$/) });
        expect(spun.ms).toBeGreaterThan(WALL_CLOCK_MS - 2_000);
        expect(spun.ms).toBeLessThan(WALL_CLOCK_MS + 3_000);
      });

      it('22. 100 MB of output is cut at the output limit with a typed error, and the run killed early', async () => {
        const answer = await call("const s = 'x'.repeat(1 << 20); for (let i = 0; i < 100; i++) process.stdout.write(s); return 'finished';");
        expect(failed(answer)).toEqual({ code: 'tool_failed', message: `sandboxed run exceeded its output limit of ${OUTPUT_BYTES} bytes` });
        expect(answer.ms).toBeLessThan(WALL_CLOCK_MS / 2);
        expect(answer.raw.length).toBeLessThan(2_000);
      });

      it('23. a huge return value within the sandbox limit is truncated to the worker output cap', async () => {
        const answer = await call("return 'y'.repeat(200000);");
        const result = (answer.reply as Extract<ToolReply, { ok: true }>).result;
        expect(answer.reply.ok).toBe(true);
        expect(result).toMatchObject({ truncated: true, bytes: expect.any(Number), preview: expect.stringMatching(/^\{"durationMs":/) });
        expect((result as { bytes: number }).bytes).toBeGreaterThan(200_000);
        expect(Buffer.byteLength(answer.raw)).toBeLessThanOrEqual(compileConfig({ prefix: PREFIX }).tools.maxOutputBytes + 1_000);
      });

      it('24. descriptors run out at the open-files limit, and none of the worker descriptors is inherited', async () => {
        const out = ok(
          await call(`const fs = require('fs');
            const fds = fs.readdirSync('/proc/self/fd').map((fd) => { try { return [Number(fd), fs.readlinkSync('/proc/self/fd/' + fd)]; } catch (e) { return [Number(fd), e.code]; } });
            let n = 0, code; try { for (;;) { fs.openSync('/dev/null', 'r'); n++; } } catch (e) { code = e.code; }
            return { fds, n, code };`),
        );
        const value = out.value as { fds: [number, string][]; n: number; code: string };
        expect(value.code).toBe('EMFILE');
        expect(value.n).toBeGreaterThan(10);
        expect(value.n).toBeLessThan(OPEN_FILES);
        // The sandbox's descriptors are its own stdio, Node's internal pipes and event fds, and /dev/null: no host file.
        for (const [fd, target] of value.fds) {
          expect(target).toMatch(/^(socket:\[\d+\]|pipe:\[\d+\]|anon_inode:\S+|\/dev\/null|ENOENT)$/);
          if (target.startsWith('socket:')) expect(fd).toBeLessThanOrEqual(2);
        }
        // None is one of this process's sockets, among them the worker's NATS connection.
        const hostSockets = new Set(
          readdirSync('/proc/self/fd')
            .map((fd) => {
              try {
                return readlinkSync(`/proc/self/fd/${fd}`);
              } catch {
                return '';
              }
            })
            .filter((t) => t.startsWith('socket:')),
        );
        expect(hostSockets.size).toBeGreaterThanOrEqual(2);
        for (const [, target] of value.fds) expect(hostSockets.has(target)).toBe(false);
      });
    });

    it('25. after the whole suite the worker still answers a normal call', async () => {
      const answer = await call('return 1+1');
      expect(ok(answer)).toMatchObject({ value: 2, valueFrom: 'return' });
      expect(answer.reply.worker).toBe(worker.workerId);
    });
  },
);

/** Connects from the host to a local port: what the sandbox could not do. */
function hostConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve('CONNECTED');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'ERROR'));
  });
}
