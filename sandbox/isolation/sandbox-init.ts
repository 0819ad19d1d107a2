/**
 * The sandbox's pid 1, as the host sees it, and how the host kills it.
 *
 * With `--unshare-pid`, bwrap's own init is pid 1 of the sandbox's pid namespace. It runs in a
 * session of its own (`--new-session`), so killing the host-side bwrap's process group does not
 * reach it; only its parent-death signal (`--die-with-parent`) ties it to that group, and sandboxed
 * code can clear that signal (it runs as the same uid and can write `/proc/1/mem`). Killing pid 1 by
 * its host pid needs nothing from inside the sandbox, and the kernel then kills every other process
 * of the namespace with it.
 */
import { readlinkSync } from 'node:fs';
import { z } from 'zod';

/** The sandbox's pid 1: its host pid and the pid namespace it is init of. */
export interface SandboxInit {
  /** Host pid of the sandbox's pid 1. */
  readonly pid: number;
  /** The sandbox's pid namespace as `/proc/<pid>/ns/pid` names it: `pid:[<inode>]`. */
  readonly namespace: string;
}

/**
 * The first line bwrap writes on `--json-status-fd`: the host pid of the child it cloned into the new
 * namespaces and, since bubblewrap 0.5, the inode numbers of those namespaces.
 */
const bwrapChildReport = z.object({
  'child-pid': z.number().int().min(2),
  'pid-namespace': z.number().int().positive().optional(),
});

let ownNamespace: string | undefined;

function namespaceOf(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined; // gone, or a zombie (which has no namespaces left)
  }
}

/**
 * The sandbox's pid 1 from the first line of bwrap's JSON status, or `undefined` when the line is not
 * bwrap's child report, or names a process that is not in a pid namespace of its own. An older bwrap
 * that does not report `pid-namespace` is asked through `/proc` instead (its child still exists then,
 * unless it has already exited, in which case there is nothing left to kill).
 */
export function sandboxInitOf(statusLine: string): SandboxInit | undefined {
  let json: unknown;
  try {
    json = JSON.parse(statusLine);
  } catch {
    return undefined;
  }
  const report = bwrapChildReport.safeParse(json);
  if (!report.success) return undefined;
  const pid = report.data['child-pid'];
  const inode = report.data['pid-namespace'];
  const namespace = inode !== undefined ? `pid:[${inode}]` : namespaceOf(pid);
  ownNamespace ??= namespaceOf('self');
  // Never a process of this host's own pid namespace: only a sandbox's init is ever killed this way.
  if (namespace === undefined || namespace === ownNamespace) return undefined;
  return { pid, namespace };
}

/**
 * SIGKILLs the sandbox's pid 1, and with it every process of its pid namespace, if it is still
 * alive. A pid whose process is gone may have been reused, so the process is killed only while
 * `/proc/<pid>/ns/pid` still names the sandbox's namespace (no process can enter a pid namespace
 * whose init has died). Returns whether the signal was sent; never throws.
 */
export function killSandboxInit(init: SandboxInit): boolean {
  if (namespaceOf(init.pid) !== init.namespace) return false;
  try {
    process.kill(init.pid, 'SIGKILL');
    return true;
  } catch {
    return false; // exited between the check and the signal
  }
}
