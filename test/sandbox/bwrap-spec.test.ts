/**
 * Pure tests of the bwrap level's pieces: spec and limit validation, the bwrap command line, the
 * seccomp program, status decoding and failure classification. No process is spawned.
 */
import { describe, expect, it } from 'vitest';
import { bwrapArguments, type RootEntry } from '../../sandbox/isolation/bwrap-args.ts';
import { inheritableDescriptors } from '../../sandbox/isolation/inherited-fds.ts';
import {
  heapMiBFor,
  NODE_RUNTIME_RESERVE_BYTES,
  NODE_THREAD_STACK_BYTES,
  nodeSandboxSpec,
  semiSpaceMiBFor,
} from '../../sandbox/isolation/javascript-runner.ts';
import { prlimitPrefix } from '../../sandbox/isolation/limits.ts';
import { decodeBwrapStatus } from '../../sandbox/isolation/sandbox-result.ts';
import { DENIED_SYSCALLS, seccompProgram } from '../../sandbox/isolation/seccomp.ts';
import {
  compileSandboxLimits,
  compileSandboxSpec,
  defaultSandboxLimits,
  sandboxFailure,
  SandboxCpuLimitError,
  SandboxExitError,
  SandboxMemoryLimitError,
  SandboxOutputLimitError,
  SandboxSpecError,
  SandboxTimeoutError,
  type SandboxResult,
} from '../../sandbox/isolation/index.ts';

const MiB = 1024 * 1024;
const layout: RootEntry[] = [
  { kind: 'ro-bind', path: '/usr' },
  { kind: 'symlink', target: 'usr/bin', path: '/bin' },
  { kind: 'ro-bind', path: '/etc/ld.so.cache' },
];

describe('compileSandboxLimits', () => {
  it('fills in the documented defaults and freezes the result', () => {
    const limits = compileSandboxLimits();
    expect(limits).toEqual({
      memoryBytes: 256 * MiB,
      cpuSeconds: 10,
      processes: 32,
      fileSizeBytes: 16 * MiB,
      openFiles: 64,
      wallClockMs: 10_000,
      outputBytes: 1 * MiB,
      scratchBytes: 64 * MiB,
    });
    expect(Object.isFrozen(limits)).toBe(true);
    expect(compileSandboxLimits({ cpuSeconds: 2, wallClockMs: undefined as never })).toEqual({ ...defaultSandboxLimits, cpuSeconds: 2 });
  });

  it.each([{ cpuSeconds: 0 }, { processes: -1 }, { wallClockMs: 1.5 }, { memoryBytes: 1024 }, { openFiles: 2 }, { bogus: 1 }])('rejects %o', (bad) => {
    expect(() => compileSandboxLimits(bad as never)).toThrow(SandboxSpecError);
  });

  it('becomes prlimit flags: data and address space, cpu soft:hard, nproc, fsize, nofile, no core', () => {
    expect(prlimitPrefix(compileSandboxLimits({ memoryBytes: 64 * MiB, cpuSeconds: 3 }))).toEqual([
      '/usr/bin/prlimit',
      `--data=${64 * MiB}`,
      `--as=${64 * MiB + 1024 * MiB}`,
      '--cpu=3:4',
      '--nproc=32',
      `--fsize=${16 * MiB}`,
      '--nofile=64',
      '--core=0',
      '--',
    ]);
    expect(heapMiBFor({ memoryBytes: 256 * MiB })).toBe(128);
    expect(heapMiBFor({ memoryBytes: 16 * MiB })).toBe(8);
    expect(semiSpaceMiBFor({ memoryBytes: 16 * MiB })).toBe(1);
    expect(semiSpaceMiBFor({ memoryBytes: 256 * MiB })).toBe(4);
    expect(semiSpaceMiBFor({ memoryBytes: 4096 * MiB })).toBe(8);
  });

  it('grants a runtime’s own reservation on top of the memory limit, and sets its stack when asked', () => {
    const limits = compileSandboxLimits({ memoryBytes: 64 * MiB });
    const prefix = prlimitPrefix(limits, { reservedBytes: 80 * MiB, stackBytes: 2 * MiB });
    expect(prefix.slice(0, 4)).toEqual(['/usr/bin/prlimit', `--data=${144 * MiB}`, `--as=${144 * MiB + 1024 * MiB}`, `--stack=${2 * MiB}`]);
    expect(prlimitPrefix(limits).some((arg) => arg.startsWith('--stack'))).toBe(false);
  });
});

describe('nodeSandboxSpec', () => {
  it('sizes V8’s heap from the memory limit and asks for Node’s reserve and small thread stacks', () => {
    const spec = compileSandboxSpec(nodeSandboxSpec('1', ['a'], { limits: { memoryBytes: 96 * MiB } }));
    expect(spec.command.slice(1)).toEqual(['--max-old-space-size=48', '--max-semi-space-size=1', '-e', '1', 'a']);
    expect(spec.runtime).toEqual({ reservedBytes: NODE_RUNTIME_RESERVE_BYTES, stackBytes: NODE_THREAD_STACK_BYTES });
    expect(spec.limits.memoryBytes).toBe(96 * MiB); // the tool's limit is reported as it declared it
    const prefix = bwrapArguments(spec, { status: 3 }, layout);
    expect(prefix).toContain(`--data=${96 * MiB + NODE_RUNTIME_RESERVE_BYTES}`);
    expect(prefix).toContain(`--stack=${NODE_THREAD_STACK_BYTES}`);
  });

  it.each([{ reservedBytes: -1 }, { reservedBytes: 1.5 }, { stackBytes: 1024 }, { reservedBytes: 2 ** 40 }])('refuses runtime %o', (runtime) => {
    expect(() => compileSandboxSpec({ command: ['true'], runtime })).toThrow(SandboxSpecError);
  });
});

describe('compileSandboxSpec', () => {
  it('gives an explicit minimal environment, /tmp as cwd, and freezes', () => {
    const spec = compileSandboxSpec({ command: ['true'], env: { FOO: 'bar' } });
    expect(spec.env).toEqual({ PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/tmp', TMPDIR: '/tmp', LANG: 'C.UTF-8', TZ: 'UTC', FOO: 'bar' });
    expect(spec.cwd).toBe('/tmp');
    expect(Object.isFrozen(spec)).toBe(true);
    expect(Object.isFrozen(spec.binds.ro)).toBe(true);
  });

  it.each([
    ['an empty command', { command: [] }],
    ['a NUL in an argument', { command: ['echo', 'a\0b'] }],
    ['a relative cwd', { command: ['true'], cwd: 'tmp' }],
    ['a `..` cwd', { command: ['true'], cwd: '/tmp/../etc' }],
    ['a relative bind', { command: ['true'], binds: { ro: ['data'] } }],
    ['a `..` bind', { command: ['true'], binds: { ro: ['/srv/../etc'] } }],
    ['an unnormalised bind', { command: ['true'], binds: { rw: ['/srv//data'] } }],
    ['binding the root', { command: ['true'], binds: { ro: ['/'] } }],
    ['binding under /proc', { command: ['true'], binds: { ro: ['/proc/1'] } }],
    ['binding /dev', { command: ['true'], binds: { rw: ['/dev'] } }],
    ['a bad env name', { command: ['true'], env: { 'A=B': 'x' } }],
    ['bad limits', { command: ['true'], limits: { processes: 0 } }],
  ])('rejects %s', (_what, spec) => {
    expect(() => compileSandboxSpec(spec as never)).toThrow(SandboxSpecError);
  });
});

describe('bwrapArguments', () => {
  const spec = compileSandboxSpec({ command: ['node', '-e', '1'], binds: { ro: ['/srv/in'], rw: ['/srv/out'] }, limits: { scratchBytes: 8 * MiB } });
  const args = bwrapArguments(spec, { status: 3, seccomp: 4 }, layout);
  const before = args.slice(0, args.indexOf('--'));

  it('always carries every hardening flag', () => {
    for (const flag of ['--unshare-all', '--unshare-user', '--disable-userns', '--assert-userns-disabled', '--die-with-parent', '--new-session', '--clearenv']) {
      expect(before).toContain(flag);
    }
    expect(before.join(' ')).toContain('--uid 65534 --gid 65534');
    expect(before.join(' ')).toContain('--cap-drop ALL');
    expect(before.join(' ')).toContain('--proc /proc --dev /dev');
    expect(before.join(' ')).toContain(`--size ${8 * MiB} --perms 0700 --tmpfs /tmp`);
    expect(before.join(' ')).toContain('--json-status-fd 3');
    expect(before.join(' ')).toContain('--seccomp 4');
    expect(before).not.toContain('--share-net');
  });

  it('binds only the layout and the declared paths, and makes / and /dev read-only after them', () => {
    const binds = before.flatMap((arg, i) => (arg === '--bind' || arg === '--ro-bind' ? [`${arg} ${before[i + 1]}`] : []));
    expect(binds).toEqual(['--ro-bind /usr', '--ro-bind /etc/ld.so.cache', '--ro-bind /srv/in', '--bind /srv/out']);
    expect(before.join(' ')).toContain('--symlink usr/bin /bin');
    const lastBind = before.lastIndexOf('--bind');
    expect(before.indexOf('--remount-ro')).toBeGreaterThan(lastBind);
    expect(before.join(' ')).toContain('--remount-ro /dev --remount-ro /');
  });

  it('sets exactly the compiled environment', () => {
    const env = before.flatMap((arg, i) => (arg === '--setenv' ? [`${before[i + 1]}=${before[i + 2]}`] : []));
    expect(env.sort()).toEqual(['HOME=/tmp', 'LANG=C.UTF-8', 'PATH=/usr/local/bin:/usr/bin:/bin', 'TMPDIR=/tmp', 'TZ=UTC']);
  });

  it('runs the command through prlimit, last', () => {
    const after = args.slice(args.indexOf('--') + 1);
    expect(after[0]).toBe('/usr/bin/prlimit');
    expect(after.slice(-3)).toEqual(['node', '-e', '1']);
  });
});

describe('seccompProgram', () => {
  type Insn = { code: number; jt: number; jf: number; k: number };
  const decode = (bytes: Buffer): Insn[] =>
    Array.from({ length: bytes.length / 8 }, (_, i) => ({
      code: bytes.readUInt16LE(i * 8),
      jt: bytes.readUInt8(i * 8 + 2),
      jf: bytes.readUInt8(i * 8 + 3),
      k: bytes.readUInt32LE(i * 8 + 4),
    }));

  it('x86_64: checks the arch, refuses x32, denies every listed call with EPERM, allows the rest', () => {
    const program = decode(seccompProgram('x64')!);
    expect(program).toHaveLength(4 + DENIED_SYSCALLS.length + 2);
    const deny = program.length - 1;
    expect(program[deny]).toEqual({ code: 0x06, jt: 0, jf: 0, k: 0x00050001 });
    expect(program[deny - 1]).toEqual({ code: 0x06, jt: 0, jf: 0, k: 0x7fff0000 });
    expect(program[1]!.k).toBe(0xc000003e);
    expect(1 + 1 + program[1]!.jf).toBe(deny);
    expect(3 + 1 + program[3]!.jt).toBe(deny);
    const ptrace = program.findIndex((insn, i) => i > 3 && insn.k === 101);
    expect(ptrace).toBeGreaterThan(3);
    expect(ptrace + 1 + program[ptrace]!.jt).toBe(deny);
  });

  it('aarch64 has its own table; unknown architectures get none', () => {
    expect(decode(seccompProgram('arm64')!)[1]!.k).toBe(0xc00000b7);
    expect(seccompProgram('s390x')).toBeUndefined();
  });
});

describe('results', () => {
  const limits = compileSandboxLimits();
  const result = (over: Partial<SandboxResult>): SandboxResult => ({
    exitCode: 0,
    signal: null,
    stdout: '',
    stderr: '',
    timedOut: false,
    outputTruncated: false,
    durationMs: 1,
    ...over,
  });

  it('decodes bwrap’s 128+n statuses into signal names', () => {
    expect(decodeBwrapStatus(137, null)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(decodeBwrapStatus(152, null)).toEqual({ exitCode: null, signal: 'SIGXCPU' });
    expect(decodeBwrapStatus(3, null)).toEqual({ exitCode: 3, signal: null });
    expect(decodeBwrapStatus(null, 'SIGKILL')).toEqual({ exitCode: null, signal: 'SIGKILL' });
  });

  it('classifies each bad ending into its own error, in precedence order', () => {
    expect(sandboxFailure(result({}), limits)).toBeUndefined();
    expect(sandboxFailure(result({ timedOut: true, outputTruncated: true, signal: 'SIGKILL', exitCode: null }), limits)).toBeInstanceOf(SandboxTimeoutError);
    expect(sandboxFailure(result({ outputTruncated: true, signal: 'SIGKILL', exitCode: null }), limits)).toBeInstanceOf(SandboxOutputLimitError);
    expect(sandboxFailure(result({ signal: 'SIGXCPU', exitCode: null }), limits)).toBeInstanceOf(SandboxCpuLimitError);
    expect(sandboxFailure(result({ exitCode: 134, stderr: 'FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory' }), limits)).toBeInstanceOf(
      SandboxMemoryLimitError,
    );
    expect(sandboxFailure(result({ exitCode: 0, stderr: 'out of memory' }), limits)).toBeUndefined();
    const exit = sandboxFailure(result({ exitCode: 2, stderr: 'nope' }), limits);
    expect(exit).toBeInstanceOf(SandboxExitError);
    expect(exit).toMatchObject({ code: 'tool_failed', reason: 'sandbox_non_zero_exit', exitCode: 2, retryable: false });
    expect(sandboxFailure(result({ timedOut: true }), limits)).toMatchObject({ code: 'tool_timeout', reason: 'sandbox_timeout' });
  });
});

describe('inheritableDescriptors', () => {
  it('lists only numbers at or above the floor', () => {
    for (const fd of inheritableDescriptors(3)) expect(fd).toBeGreaterThanOrEqual(3);
  });
});
