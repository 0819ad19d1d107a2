/**
 * Real escape attempts against the `bwrap` isolation level. Every attempt runs through the real
 * runner, proves that it ran (a marker or a specific error from inside), and is checked from the host
 * side where the host can see the effect (files, connections, processes, signals).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  runInBwrap,
  runJavaScript,
  compileSandboxLimits,
  sandboxFailure,
  SandboxCpuLimitError,
  SandboxMemoryLimitError,
  SandboxOutputLimitError,
  SandboxSpecError,
  SandboxTimeoutError,
  type SandboxResult,
} from '../../sandbox/isolation/index.ts';
import {
  bwrapSkipReason,
  eventually,
  hostCommandLines,
  hostDir,
  hostProcessesOf,
  marker,
  processesInPidNamespace,
  py,
  sh,
  smallLimits,
  writeSecret,
} from './escape-helpers.ts';

const skipReason = await bwrapSkipReason();
const hasPython = existsSync('/usr/bin/python3');
const hasPerl = existsSync('/usr/bin/perl');
const asRoot = process.getuid?.() === 0;
const SANDBOX_HOST_UID = asRoot ? 65534 : (process.getuid?.() ?? 65534);

const readCmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
};

const out = (r: SandboxResult) => `${r.stdout}\n${r.stderr}`;

function listen(server: Server, ...args: unknown[]): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    (server.listen as (...a: unknown[]) => void)(...args, () => resolve());
  });
}

describe.skipIf(skipReason !== undefined)(
  skipReason === undefined ? 'bwrap escape suite' : `bwrap escape suite (skipped: ${skipReason})`,
  { timeout: 20_000 },
  () => {
    const canaryEnv = marker('ENVCANARY');
    const secrets = hostDir('troupe-escape-secrets-', 0o755);
    const secretText = marker('SECRET');
    let secretFile = '';

    beforeAll(() => {
      process.env.TROUPE_ESCAPE_CANARY = canaryEnv;
      secretFile = writeSecret(secrets.path, 'secret.txt', secretText);
    });
    afterAll(() => {
      delete process.env.TROUPE_ESCAPE_CANARY;
      secrets[Symbol.dispose]();
    });

    describe('host secrets', () => {
      it('cannot read /etc/shadow, and /etc holds only the linker cache and alternatives', async () => {
        const r = await sh('cat /etc/shadow; echo "shadow-rc=$?"; ls -A /etc');
        expect(r.stdout).toContain('shadow-rc=1');
        expect(r.stderr).toContain('/etc/shadow: No such file or directory');
        expect(r.stdout.split('\n').slice(1).filter(Boolean).sort()).toEqual(['alternatives', 'ld.so.cache']);
        if (asRoot) {
          const hostShadowHead = readFileSync('/etc/shadow', 'utf8').split('\n')[0]!;
          expect(hostShadowHead.length).toBeGreaterThan(0);
          expect(out(r)).not.toContain(hostShadowHead);
        }
      });

      it("cannot see the host process's environment (canary variable)", async () => {
        expect(process.env.TROUPE_ESCAPE_CANARY).toBe(canaryEnv);
        const r = await sh('env; echo ---; cat /proc/self/environ /proc/1/environ | tr "\\0" "\\n"');
        expect(r.stdout).toContain('PATH=/usr/local/bin:/usr/bin:/bin');
        expect(out(r)).not.toContain(canaryEnv);
        expect(out(r)).not.toContain('NODE_EXTRA_CA_CERTS');
        const js = await runJavaScript({ code: 'return process.env' }, { limits: smallLimits });
        expect(Object.keys(js.value as object).sort()).toEqual(['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR', 'TZ']);
      });

      it('cannot reach /root, ~/.ssh, /home, /run, /var, /sys or a host file by absolute path', async () => {
        const r = await sh(`for p in /root /root/.ssh /home /run /var /sys /work ${secretFile}; do ls -A "$p" >/dev/null 2>&1 && echo "VISIBLE $p" || echo "absent $p"; done; cat ${secretFile}`);
        expect(r.stdout).toContain(`absent ${secretFile}`);
        expect(r.stdout).not.toContain('VISIBLE');
        expect(r.stdout.match(/^absent /gm)).toHaveLength(8);
        expect(out(r)).not.toContain(secretText);
      });

      it("cannot read the test process's /proc/<pid>/environ (host pids are not in the sandbox)", async () => {
        const r = await sh(`cat /proc/${process.pid}/environ; echo "rc=$?"; ls /proc | grep -c '^[0-9]'`);
        expect(r.stdout).toMatch(/rc=1/);
        expect(out(r)).not.toContain(canaryEnv);
        const visiblePids = Number(r.stdout.trim().split('\n').at(-1));
        expect(visiblePids).toBeGreaterThan(0);
        expect(visiblePids).toBeLessThan(8);
      });

      it('symlinks in scratch resolve inside the sandbox, not on the host', async () => {
        const r = await sh(
          `cd /tmp && ln -s /etc/shadow s1 && ln -s ${secretFile} s2 && ln -s /proc/1/root/../../.. s3 && echo linked; ` +
            'cat s1 s2; echo "cat-rc=$?"; ls -A s3/',
        );
        expect(r.stdout).toContain('linked');
        expect(r.stdout).toContain('cat-rc=1');
        expect(out(r)).not.toContain(secretText);
        const rootListing = r.stdout.split('cat-rc=1\n')[1]!.split('\n').filter(Boolean);
        expect(rootListing).toContain('usr');
        expect(rootListing).not.toContain('root');
        expect(rootListing).not.toContain('home');
        expect(rootListing).not.toContain('work');
      });

      it('a `..` cwd is refused, and `cd ..` past the root stays in the sandbox root', async () => {
        await expect(sh('pwd', { cwd: '/tmp/../../..' })).rejects.toBeInstanceOf(SandboxSpecError);
        const r = await sh('cd /tmp/../../../../..; pwd; ls -A');
        const [pwd, ...entries] = r.stdout.trim().split('\n');
        expect(pwd).toBe('/');
        expect(entries).toEqual(expect.arrayContaining(['usr', 'tmp', 'proc', 'dev', 'etc']));
        for (const entry of entries) expect(['bin', 'dev', 'etc', 'lib', 'lib32', 'lib64', 'libx32', 'proc', 'sbin', 'tmp', 'usr']).toContain(entry);
      });

      it('does not inherit a descriptor opened in the test process', async () => {
        const fd = openSync(secretFile, 'r');
        try {
          const r = await sh(`for f in /proc/$$/fd/*; do echo "$f -> $(readlink $f)"; done; echo ran; cat /proc/self/fd/${fd}`);
          expect(r.stdout).toContain('ran');
          expect(out(r)).not.toContain(secretText);
          expect(r.stdout).not.toContain(secretFile);
        } finally {
          closeSync(fd);
        }
      });

      it('does not inherit a descriptor the host process holds WITHOUT close-on-exec', async () => {
        const fd = openSync(secretFile, 'r');
        const target = 40;
        const stdio: Array<'ignore' | 'pipe' | 'inherit' | number> = ['ignore', 'pipe', 'inherit'];
        while (stdio.length < target) stdio.push('ignore');
        stdio[target] = fd;
        const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'fd-leak-child.ts'), String(target)], {
          stdio,
          cwd: join(import.meta.dirname, '..', '..'),
        });
        closeSync(fd);
        let text = '';
        child.stdout!.on('data', (c: Buffer) => (text += c.toString('utf8')));
        await new Promise((resolve) => child.on('close', resolve));
        const report = JSON.parse(text) as { parentRead: string; inheritable: boolean; result: SandboxResult };
        expect(report.parentRead).toBe(secretText); // the descriptor really was open in the host process
        expect(report.inheritable).toBe(true); // and really was inheritable
        expect(report.result.stdout).toContain('ran');
        expect(out(report.result)).not.toContain(secretText);
        expect(report.result.stdout).toContain('done');
        expect(report.result.stdout).toContain(`/${target} -> /dev/null`);
      });
    });

    describe('writes and mounts', () => {
      it('a write to /tmp lands in the private scratch, never in the host /tmp', async () => {
        const name = marker('troupe-escape-write');
        const r = await sh(`echo pwned > /tmp/${name} && cat /tmp/${name}`);
        expect(r.stdout).toBe('pwned\n');
        expect(existsSync(`/tmp/${name}`)).toBe(false);
      });

      it('cannot write to /, /usr, /etc or /dev', async () => {
        const name = marker('troupe-escape');
        const r = await sh(`for d in / /usr /usr/bin /etc /dev /dev/shm; do touch "$d/${name}" 2>/dev/null && echo "WROTE $d" || echo "refused $d"; done`);
        expect(r.stdout.match(/^refused /gm)).toHaveLength(6);
        expect(r.stdout).not.toContain('WROTE');
        for (const d of ['/', '/usr', '/usr/bin', '/etc', '/dev']) expect(existsSync(join(d, name))).toBe(false);
      });

      it('cannot write through a declared read-only bind (while a declared rw bind works)', async () => {
        using ro = hostDir('troupe-escape-ro-', 0o755);
        using rw = hostDir('troupe-escape-rw-', 0o777);
        writeFileSync(join(ro.path, 'data.txt'), 'original', { mode: 0o644 });
        const r = await sh(
          `cat ${ro.path}/data.txt; echo; echo tampered > ${ro.path}/data.txt; echo "ro-rc=$?"; touch ${ro.path}/new; echo "new-rc=$?"; echo written > ${rw.path}/out.txt; echo "rw-rc=$?"`,
          { binds: { ro: [ro.path], rw: [rw.path] } },
        );
        expect(r.stdout).toContain('original');
        expect(r.stderr).toContain('Read-only file system');
        expect(r.stdout).toMatch(/ro-rc=[12]/);
        expect(r.stdout).toMatch(/new-rc=1/);
        expect(readFileSync(join(ro.path, 'data.txt'), 'utf8')).toBe('original');
        expect(readdirSync(ro.path)).toEqual(['data.txt']);
        expect(r.stdout).toContain('rw-rc=0');
        expect(readFileSync(join(rw.path, 'out.txt'), 'utf8')).toBe('written\n');
      });

      it('cannot remount /usr read-write, directly or from a new namespace', async () => {
        const name = marker('troupe-remount');
        const r = await sh(`mount -o remount,rw /usr; echo "mount-rc=$?"; unshare -rm sh -c "mount -o remount,rw /usr"; echo "unshare-rc=$?"; touch /usr/${name}; echo "touch-rc=$?"`);
        expect(r.stdout).toMatch(/mount-rc=(32|1)\b/);
        expect(r.stdout).not.toContain('unshare-rc=0');
        expect(r.stdout).toContain('touch-rc=1');
        expect(existsSync(`/usr/${name}`)).toBe(false);
      });

      it.skipIf(!hasPython)('mount(2) and unshare(2) are refused even as raw syscalls', async () => {
        const r = await py(
          'import ctypes,os\nlibc=ctypes.CDLL(None,use_errno=True)\n' +
            'rc=libc.mount(b"none",b"/usr",None,32|4096,None); print("mount",rc,os.strerror(ctypes.get_errno()))\n' +
            'rc=libc.unshare(0x10000000|0x20000); print("unshare",rc,os.strerror(ctypes.get_errno()))',
        );
        expect(r.stdout).toContain('mount -1 Operation not permitted');
        expect(r.stdout).toContain('unshare -1 Operation not permitted');
      });

      it('cannot create device nodes, and /dev holds only the harmless ones', async () => {
        const r = await sh('mknod /tmp/sda b 8 0; echo "blk-rc=$?"; mknod /tmp/mem c 1 1; echo "chr-rc=$?"; ls -A /dev');
        expect(r.stdout).toContain('blk-rc=1');
        expect(r.stdout).toContain('chr-rc=1');
        expect(r.stderr).toContain('Operation not permitted');
        const dev = r.stdout.split('\n').slice(2).filter(Boolean);
        expect(dev).toContain('null');
        for (const forbidden of ['sda', 'vda', 'mem', 'kmsg', 'port', 'fuse', 'kvm']) expect(dev).not.toContain(forbidden);
      });

      it('scratch space and file size are bounded', async () => {
        const r = await sh('dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1 | head -1; du -k /tmp/fill | cut -f1', {
          limits: { scratchBytes: 4 * 1024 * 1024, fileSizeBytes: 64 * 1024 * 1024 },
        });
        expect(r.stdout).toMatch(/No space left on device/);
        expect(Number(r.stdout.trim().split('\n').at(-1))).toBeLessThanOrEqual(4 * 1024);
        const big = await sh('head -c 3000000 /dev/zero > /tmp/big; echo "rc=$?"', { limits: { fileSizeBytes: 1024 * 1024 } });
        expect(big.stdout).toMatch(/rc=(153|1)\b/); // 128 + SIGXFSZ, or EFBIG
      });
    });

    describe('network', () => {
      it('cannot open TCP or UDP to an external address', async () => {
        const js = await runJavaScript(
          {
            code: `
            const net = require('net'), dgram = require('dgram');
            const tcp = (host) => new Promise((res) => { const s = net.connect({ host, port: 443 });
              s.on('connect', () => { s.destroy(); res('CONNECTED'); }); s.on('error', (e) => res(e.code)); setTimeout(() => { s.destroy(); res('TIMEOUT'); }, 1500); });
            const udp = () => new Promise((res) => { const s = dgram.createSocket('udp4');
              s.send('x', 53, '8.8.8.8', (e) => { s.close(); res(e ? e.code : 'SENT'); }); });
            return { v4: await tcp('1.1.1.1'), v6: await tcp('2606:4700:4700::1111'), udp: await udp() };`,
          },
          { limits: smallLimits },
        );
        expect(js.value).toEqual({ v4: 'ENETUNREACH', v6: 'ENETUNREACH', udp: 'ENETUNREACH' });
      });

      it('cannot connect to a TCP server listening on the host loopback', async () => {
        let connections = 0;
        const server = createServer((socket) => {
          connections += 1;
          socket.destroy();
        });
        await listen(server, 0, '127.0.0.1');
        const port = (server.address() as { port: number }).port;
        try {
          const js = await runJavaScript(
            {
              code: `return await new Promise((res) => { const s = require('net').connect({ host: '127.0.0.1', port: input });
                s.on('connect', () => { s.destroy(); res('CONNECTED'); }); s.on('error', (e) => res(e.code)); setTimeout(() => res('TIMEOUT'), 1500); });`,
              input: port,
            },
            { limits: smallLimits },
          );
          expect(js.value).toBe('ECONNREFUSED');
          expect(connections).toBe(0);
        } finally {
          server.close();
        }
      });

      it('cannot connect to an abstract unix socket of the host', async () => {
        let connections = 0;
        const server = createServer((socket) => {
          connections += 1;
          socket.destroy();
        });
        const name = `\0${marker('troupe-abstract')}`;
        await listen(server, name);
        try {
          const js = await runJavaScript(
            {
              code: `return await new Promise((res) => { const s = require('net').connect({ path: input });
                s.on('connect', () => { s.destroy(); res('CONNECTED'); }); s.on('error', (e) => res(e.code)); });`,
              input: name,
            },
            { limits: smallLimits },
          );
          expect(js.value).toBe('ECONNREFUSED');
          expect(connections).toBe(0);
        } finally {
          server.close();
        }
      });

      it('cannot resolve names: no resolver, and a DNS server on the host loopback gets no query', async () => {
        let queries = 0;
        const dnsServer = createSocket('udp4', () => (queries += 1));
        await new Promise<void>((resolve) => dnsServer.bind(0, '127.0.0.1', resolve));
        const port = dnsServer.address().port;
        try {
          const js = await runJavaScript(
            {
              code: `const dns = require('dns');
                const resolver = new dns.Resolver({ timeout: 300, tries: 1 });
                resolver.setServers(['127.0.0.1:' + input]);
                return { lookup: await new Promise((res) => dns.lookup('example.com', (e, a) => res(e ? e.code : a))),
                         viaHost: await new Promise((res) => resolver.resolve4('example.com', (e, a) => res(e ? e.code : a))) };`,
              input: port,
            },
            { limits: smallLimits },
          );
          const value = js.value as { lookup: string; viaHost: string };
          expect(['EAI_AGAIN', 'ENOTFOUND']).toContain(value.lookup);
          expect(['ECONNREFUSED', 'ETIMEOUT']).toContain(value.viaHost);
          expect(queries).toBe(0);
        } finally {
          dnsServer.close();
        }
      });
    });

    describe('privileges and other processes', () => {
      it('runs as uid 65534 with no capabilities, no_new_privs and a seccomp filter', async () => {
        const r = await sh('id -u; id -g; grep -E "^(Uid|Gid|Cap[A-Za-z]+|NoNewPrivs|Seccomp):" /proc/self/status');
        const lines = r.stdout.trim().split('\n');
        expect(lines[0]).toBe('65534');
        expect(lines[1]).toBe('65534');
        for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(r.stdout).toMatch(new RegExp(`${cap}:\\s+0000000000000000`));
        expect(r.stdout).toMatch(/Uid:\s+65534\s+65534\s+65534\s+65534/);
        expect(r.stdout).toMatch(/NoNewPrivs:\s+1/);
        expect(r.stdout).toMatch(/Seccomp:\s+2/);
      });

      it('cannot become root: setuid(0), setuid binaries and process.setuid all fail', async () => {
        const r = await sh('ls -l /usr/bin/su; grep " /usr " /proc/mounts; su -c "id -u" root; echo "su-rc=$?"; id -u');
        if (existsSync('/usr/bin/su') && (statSync('/usr/bin/su').mode & 0o4000) !== 0) expect(r.stdout).toMatch(/^-rwsr-xr-x/); // the setuid bit is there...
        expect(r.stdout).toMatch(/ \/usr \S+ ro,nosuid/); // ...but the mount ignores it (and no_new_privs is set)
        expect(r.stdout).not.toMatch(/^0$/m);
        expect(r.stdout).toMatch(/su-rc=[1-9]/);
        expect(r.stdout.trim().split('\n').at(-1)).toBe('65534');
        await expect(runJavaScript({ code: 'process.setuid(0); return process.getuid()' }, { limits: smallLimits })).rejects.toMatchObject({
          name: 'SandboxCodeError',
          errorMessage: expect.stringMatching(/EPERM|EINVAL|not permitted|invalid/i),
        });
      });

      it.skipIf(!hasPython)('cannot ptrace the host test process, nor the sandbox pid 1', async () => {
        const r = await py(
          `import ctypes,os\nlibc=ctypes.CDLL(None,use_errno=True)\n` +
            `for pid in (${process.pid}, 1):\n  rc=libc.ptrace(16, pid, 0, 0); print("attach", pid, rc, os.strerror(ctypes.get_errno()))\n` +
            `rc=libc.setuid(0); print("setuid", rc, os.strerror(ctypes.get_errno()))`,
        );
        expect(r.stdout).toContain(`attach ${process.pid} -1 Operation not permitted`);
        expect(r.stdout).toContain('attach 1 -1 Operation not permitted');
        expect(r.stdout).toMatch(/setuid -1 (Invalid argument|Operation not permitted)/);
        expect(r.timedOut).toBe(false);
      });

      it('signals cannot reach the test process or a host process of the same uid', async () => {
        const sleeper = spawn('sleep', ['30'], { stdio: 'ignore', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
        let sleeperExited = false;
        sleeper.on('exit', () => (sleeperExited = true));
        try {
          const r = await sh(`kill -9 ${process.pid}; echo "test-rc=$?"; kill -9 ${sleeper.pid}; echo "sleeper-rc=$?"; kill -9 -1; echo "all-rc=$?"`);
          expect(r.stdout).toContain('test-rc=1');
          expect(r.stdout).toContain('sleeper-rc=1');
          expect(r.stderr).toMatch(/No such process/);
          await new Promise((resolve) => setTimeout(resolve, 100));
          expect(sleeperExited).toBe(false);
          expect(() => process.kill(sleeper.pid!, 0)).not.toThrow();
        } finally {
          sleeper.kill('SIGKILL');
        }
      });
    });

    describe('the sandbox init', () => {
      // seccomp refuses ptrace and process_vm_writev, but /proc/1/mem lets the code (same uid as the
      // sandbox's pid 1, which is dumpable) overwrite pid 1's text: here with code that clears its
      // parent-death signal (--die-with-parent) and then waits forever. pid 1 also runs in a session
      // of its own (--new-session), so killing the host-side bwrap's group alone leaves it running.
      const takeOverInit = `const fs = require('fs');
        const sc = fs.readFileSync('/proc/1/syscall', 'utf8').trim().split(' ');
        // prctl(PR_SET_PDEATHSIG, 0); for (;;) pause();
        const text = Buffer.from('b89d000000bf0100000031f60f05b8220000000f05ebf7', 'hex');
        fs.writeSync(fs.openSync('/proc/1/mem', 'r+'), text, 0, text.length, Number(sc[sc.length - 1]));
        // An orphan reparented to pid 1 exits, which wakes pid 1 out of wait4 into the new text.
        require('child_process').spawnSync('sh', ['-c', 'sleep 0.05 &']);
        await new Promise((res) => setTimeout(res, 300));
        const taken = { before: Number(sc[0]), after: Number(fs.readFileSync('/proc/1/syscall', 'utf8').split(' ')[0]), pidns: fs.readlinkSync('/proc/self/ns/pid') };`;
      const TAKEN = { before: 61, after: 34, pidns: expect.stringMatching(/^pid:\[\d+\]$/) }; // from wait4 to pause

      /** Every process left in the sandbox's pid namespace a moment after its run ended (then killed, so that none leaks). */
      async function leftIn(pidns: string): Promise<number[]> {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const left = processesInPidNamespace(pidns);
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone meanwhile
          }
        }
        return left;
      }

      it.skipIf(process.arch !== 'x64')('a taken-over pid 1 dies with a run that completes, and every process of its namespace with it', async () => {
        const r = await runJavaScript({ code: `${takeOverInit} require('child_process').spawn('sleep', ['30'], { detached: true, stdio: 'ignore' }).unref(); return taken;` }, { limits: smallLimits });
        const taken = r.value as { pidns: string };
        expect(taken).toEqual(TAKEN);
        expect(await leftIn(taken.pidns)).toEqual([]);
      });

      it.skipIf(process.arch !== 'x64')('a taken-over pid 1 dies with a run killed at its wall clock', async () => {
        const failure: unknown = await runJavaScript(
          { code: `${takeOverInit} console.log(JSON.stringify(taken)); for (;;) {}` },
          { limits: { ...smallLimits, wallClockMs: 1_500 } },
        ).catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(SandboxTimeoutError);
        const taken = JSON.parse((failure as SandboxTimeoutError).result!.stdout) as { pidns: string };
        expect(taken).toEqual(TAKEN);
        expect(await leftIn(taken.pidns)).toEqual([]);
      });
    });

    describe('resources', () => {
      it.skipIf(!hasPerl)('a fork bomb is contained by the process limit and ends within the wall clock', async () => {
        const tag = `7.${Math.floor(Math.random() * 1e6)}`;
        const counted = await sh(`n=0; while [ $n -lt 100 ]; do sleep ${tag} & n=$((n+1)); echo "forked $n"; done; echo never`, { limits: { processes: 16 } });
        expect(counted.stderr).toMatch(/Cannot fork|Resource temporarily unavailable/);
        expect(counted.stdout).toContain('forked 5');
        expect(counted.stdout).not.toContain('forked 16');
        expect(counted.stdout).not.toContain('never');
        // dash gives up at the first failed fork; this bomb never does, so only the wall clock ends it.
        const t0 = Date.now();
        const bomb = await runInBwrap({
          command: ['perl', '-e', `# ${tag}\nprint "bombing\n"; $| = 1; while (1) { fork }`],
          limits: { ...smallLimits, processes: 16, wallClockMs: 2_000 },
        });
        expect(bomb.stdout).toContain('bombing');
        expect(bomb.timedOut).toBe(true);
        expect(Date.now() - t0).toBeLessThan(2_000 + 3_000);
        // Nothing of either run outlives it on the host.
        expect(await eventually(() => !hostCommandLines().some((line) => line.includes(tag)))).toBe(true);
        expect(hostProcessesOf(SANDBOX_HOST_UID).every((pid) => !readCmdline(pid).includes(tag))).toBe(true);
      });

      it('a heap bomb (JS arrays) fails with SandboxMemoryLimitError', async () => {
        await expect(runJavaScript({ code: 'const a = []; for (;;) a.push(new Array(1e5).fill({ x: 1 }));' }, { limits: smallLimits })).rejects.toBeInstanceOf(
          SandboxMemoryLimitError,
        );
      });

      it('an off-heap bomb (Buffer.alloc loop) fails with SandboxMemoryLimitError', async () => {
        await expect(runJavaScript({ code: 'const a = []; for (;;) a.push(Buffer.alloc(1 << 24, 1));' }, { limits: smallLimits })).rejects.toBeInstanceOf(
          SandboxMemoryLimitError,
        );
      });

      it.skipIf(!hasPython)('a native allocation bomb fails with SandboxMemoryLimitError', async () => {
        const r = await py('b = bytearray(1 << 30)\nprint("allocated")');
        expect(r.stdout).not.toContain('allocated');
        expect(sandboxFailure(r, compileSandboxLimits(smallLimits))).toBeInstanceOf(SandboxMemoryLimitError);
      });

      it('a CPU spin is killed at the wall clock, with every process in the sandbox', async () => {
        const tag = `61.${Math.floor(Math.random() * 1e6)}`;
        const t0 = Date.now();
        const r = await sh(`setsid sleep ${tag} & sleep ${tag} & echo spinning; while :; do :; done`, { limits: { wallClockMs: 1_000 } });
        expect(r.stdout).toContain('spinning');
        expect(r.timedOut).toBe(true);
        expect(r.signal).toBe('SIGKILL');
        expect(Date.now() - t0).toBeLessThan(1_000 + 2_000);
        expect(sandboxFailure(r, compileSandboxLimits({ ...smallLimits, wallClockMs: 1_000 }))).toBeInstanceOf(SandboxTimeoutError);
        expect(await eventually(() => !hostCommandLines().some((line) => line.includes(tag)))).toBe(true);
        await expect(runJavaScript({ code: 'for (;;) {}' }, { limits: { ...smallLimits, wallClockMs: 1_000 } })).rejects.toBeInstanceOf(SandboxTimeoutError);
      });

      it('a CPU spin is stopped by the CPU limit before a longer wall clock', async () => {
        await expect(runJavaScript({ code: 'for (;;) {}' }, { limits: { ...smallLimits, cpuSeconds: 1, wallClockMs: 8_000 } })).rejects.toBeInstanceOf(
          SandboxCpuLimitError,
        );
      });

      it('huge output is cut at the limit, flagged, and the run killed early', async () => {
        const t0 = Date.now();
        const r = await sh('yes troupe-flood', { limits: { outputBytes: 4096 } });
        expect(r.outputTruncated).toBe(true);
        expect(r.timedOut).toBe(false);
        expect(Buffer.byteLength(r.stdout) + Buffer.byteLength(r.stderr)).toBe(4096);
        expect(r.stdout.startsWith('troupe-flood\n')).toBe(true);
        expect(Date.now() - t0).toBeLessThan(smallLimits.wallClockMs!);
        expect(sandboxFailure(r, compileSandboxLimits({ ...smallLimits, outputBytes: 4096 }))).toBeInstanceOf(SandboxOutputLimitError);
        await expect(runJavaScript({ code: "for (;;) process.stdout.write('x'.repeat(65536));" }, { limits: { ...smallLimits, outputBytes: 100_000 } })).rejects.toBeInstanceOf(
          SandboxOutputLimitError,
        );
      });
    });
  },
);
