/**
 * The bubblewrap command line of the `bwrap` isolation level: every hardening flag in one place.
 */
import { lstatSync, readlinkSync, statSync } from 'node:fs';
import { prlimitPrefix } from './limits.ts';
import { SCRATCH_DIR, type CompiledSandboxSpec } from './sandbox-spec.ts';

/** The uid and gid the sandboxed command sees (nobody / nogroup). */
export const SANDBOX_ID = 65534;

/** One piece of the read-only root filesystem given to the sandbox. */
export type RootEntry =
  | { readonly kind: 'ro-bind'; readonly path: string }
  | { readonly kind: 'symlink'; readonly target: string; readonly path: string };

/**
 * What an interpreter needs and nothing else: `/usr`, the top-level library and binary directories
 * (symlinks on merged-/usr systems, read-only binds otherwise), the dynamic linker cache, and the
 * Debian alternatives symlink farm (`/usr/bin/awk`, `/usr/bin/which`, ... point into it). Never `/etc`
 * wholesale, `/home`, `/root`, `/run`, `/var`, `/sys` or the host's `/proc`.
 */
const ROOT_CANDIDATES = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc/ld.so.cache', '/etc/alternatives'];

let cachedLayout: readonly RootEntry[] | undefined;

/** The read-only root layout of this host (probed once, then cached). Missing candidates are skipped. */
export function hostRootLayout(): readonly RootEntry[] {
  if (cachedLayout !== undefined) return cachedLayout;
  const entries: RootEntry[] = [];
  for (const path of ROOT_CANDIDATES) {
    let isLink: boolean;
    try {
      isLink = lstatSync(path).isSymbolicLink();
    } catch {
      continue;
    }
    if (isLink && path !== '/etc/ld.so.cache') {
      entries.push({ kind: 'symlink', target: readlinkSync(path), path });
    } else {
      try {
        statSync(path);
      } catch {
        continue;
      }
      entries.push({ kind: 'ro-bind', path });
    }
  }
  cachedLayout = Object.freeze(entries);
  return cachedLayout;
}

/**
 * The full bwrap argv (without the bwrap binary) for a compiled spec. Guarantees, independent of the
 * spec: a new user namespace mapped to uid/gid 65534 in which further user namespaces are disabled;
 * no capabilities; new pid, net (loopback only), ipc, uts, mount and cgroup namespaces; a new session
 * (no TIOCSTI into the caller's terminal); death with the parent; an environment that is exactly
 * `spec.env`; a read-only root; a fresh `/proc` and minimal read-only `/dev`; a size-limited private
 * tmpfs at `/tmp`; rlimits applied before the command runs; the seccomp denylist when given.
 *
 * @param fds `status`: where bwrap reports the child's pid and exit code as JSON; `seccomp`: where it
 *   reads the seccomp program ({@link seccompProgram}), when there is one for this architecture.
 */
export function bwrapArguments(
  spec: CompiledSandboxSpec,
  fds: { status: number; seccomp?: number },
  layout: readonly RootEntry[] = hostRootLayout(),
): string[] {
  const args = [
    '--unshare-all',
    '--unshare-user',
    '--uid', String(SANDBOX_ID),
    '--gid', String(SANDBOX_ID),
    '--disable-userns',
    '--assert-userns-disabled',
    '--cap-drop', 'ALL',
    '--die-with-parent',
    '--new-session',
    '--hostname', 'sandbox',
    '--clearenv',
  ];
  for (const [name, value] of Object.entries(spec.env)) args.push('--setenv', name, value);
  for (const entry of layout) {
    if (entry.kind === 'symlink') args.push('--symlink', entry.target, entry.path);
    else args.push('--ro-bind', entry.path, entry.path);
  }
  args.push('--proc', '/proc', '--dev', '/dev');
  args.push('--size', String(spec.limits.scratchBytes), '--perms', '0700', '--tmpfs', SCRATCH_DIR);
  for (const path of spec.binds.ro) args.push('--ro-bind', path, path);
  for (const path of spec.binds.rw) args.push('--bind', path, path);
  // /dev and / are tmpfs that bwrap leaves writable and unbounded; only /tmp may be written.
  args.push('--remount-ro', '/dev', '--remount-ro', '/');
  args.push('--chdir', spec.cwd, '--json-status-fd', String(fds.status));
  if (fds.seccomp !== undefined) args.push('--seccomp', String(fds.seccomp));
  args.push('--', ...prlimitPrefix(spec.limits, spec.runtime), ...spec.command);
  return args;
}
