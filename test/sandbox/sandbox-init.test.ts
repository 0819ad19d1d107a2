/**
 * The sandbox's pid 1 as the host sees it: bwrap's child report on its status descriptor, and the
 * kill by host pid that never reaches a process outside the sandbox's pid namespace.
 */
import { spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { compileSandboxSpec, DEFAULT_BWRAP_PATH } from '../../sandbox/isolation/index.ts';
import { bwrapArguments, killSandboxInit, sandboxInitOf } from '../../sandbox/isolation/internal.ts';
import { bwrapSkipReason, processesInPidNamespace } from './escape-helpers.ts';

const skipReason = await bwrapSkipReason();
const ownNamespace = readlinkSync('/proc/self/ns/pid');
const ownInode = Number(/\d+/.exec(ownNamespace)![0]);

describe('sandboxInitOf', () => {
  it("reads the host pid and the pid namespace from bwrap's child report", () => {
    const line = '{ "child-pid": 21805, "cgroup-namespace": 4026532182, "ipc-namespace": 4026532180, "mnt-namespace": 4026532178, "net-namespace": 4026532183, "pid-namespace": 4026532181, "uts-namespace": 4026532179 }';
    expect(sandboxInitOf(line)).toEqual({ pid: 21805, namespace: 'pid:[4026532181]' });
  });

  it('is undefined for anything that is not a child report', () => {
    expect(sandboxInitOf('{ "exit-code": 0 }')).toBeUndefined();
    expect(sandboxInitOf('{ "child-pid": 21805')).toBeUndefined();
    expect(sandboxInitOf('{ "child-pid": "21805", "pid-namespace": 4026532181 }')).toBeUndefined();
    expect(sandboxInitOf('{ "child-pid": 1, "pid-namespace": 4026532181 }')).toBeUndefined();
    expect(sandboxInitOf('{ "child-pid": -1, "pid-namespace": 4026532181 }')).toBeUndefined();
    expect(sandboxInitOf('null')).toBeUndefined();
  });

  it("never names a process of the host's own pid namespace, reported or looked up", () => {
    expect(sandboxInitOf(JSON.stringify({ 'child-pid': process.pid, 'pid-namespace': ownInode }))).toBeUndefined();
    // Without `pid-namespace` (bubblewrap before 0.5) the namespace is read from /proc.
    expect(sandboxInitOf(JSON.stringify({ 'child-pid': process.pid }))).toBeUndefined();
    expect(sandboxInitOf(JSON.stringify({ 'child-pid': 2 ** 30 }))).toBeUndefined(); // no such process
  });
});

describe('killSandboxInit', () => {
  it('does not signal a process that is not in the named namespace (a pid reused since)', async () => {
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => sleeper.once('spawn', resolve));
      expect(killSandboxInit({ pid: sleeper.pid!, namespace: 'pid:[4026532181]' })).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(sleeper.exitCode).toBeNull();
      expect(sleeper.signalCode).toBeNull();
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('is false for a process that is gone', () => {
    expect(killSandboxInit({ pid: 2 ** 30, namespace: 'pid:[4026532181]' })).toBe(false);
  });

  it.skipIf(skipReason !== undefined)("kills a real sandbox's pid 1, found from bwrap's own report, and its whole namespace with it", async () => {
    const spec = compileSandboxSpec({ command: ['sh', '-c', 'sleep 30 & sleep 30'] });
    const bwrap = spawn(DEFAULT_BWRAP_PATH, bwrapArguments(spec, { status: 3 }), { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => bwrap.once('exit', (code, signal) => resolve(signal ?? code)));
    try {
      const status = bwrap.stdio[3] as Readable;
      const line = await new Promise<string>((resolve) => {
        let text = '';
        status.on('data', (chunk: Buffer) => {
          text += chunk.toString('utf8');
          if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
        });
      });
      const init = sandboxInitOf(line);
      expect(init).toEqual({ pid: expect.any(Number), namespace: expect.stringMatching(/^pid:\[\d+\]$/) });
      expect(init!.pid).not.toBe(bwrap.pid);
      // pid 1, the shell and its two sleeps.
      await expect.poll(() => processesInPidNamespace(init!.namespace).length).toBe(4);
      expect(killSandboxInit(init!)).toBe(true);
      // bwrap reports its child killed by SIGKILL (128 + 9) and ends; nothing is left in the namespace.
      expect(await exited).toBe(137);
      await expect.poll(() => processesInPidNamespace(init!.namespace)).toEqual([]);
    } finally {
      bwrap.kill('SIGKILL');
    }
  });
});
