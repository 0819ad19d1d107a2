/**
 * A seccomp denylist for the sandbox, as the raw classic-BPF program bubblewrap loads with
 * `--seccomp FD`. It is a second layer: the namespaces, the missing capabilities and the disabled
 * user namespaces already make most of these calls fail, but the kernel code behind them (io_uring,
 * bpf, perf, keyrings, the new mount API) is attack surface a sandbox never needs, and `ptrace` would
 * otherwise let the code stop the sandbox's own pid 1.
 */

/** Syscalls refused with EPERM, by name (numbers per architecture below). */
export const DENIED_SYSCALLS = [
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp',
  'perf_event_open', 'bpf', 'userfaultfd',
  'keyctl', 'add_key', 'request_key',
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module',
  'mount', 'umount2', 'pivot_root', 'chroot', 'unshare', 'setns',
  'open_tree', 'move_mount', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'mount_setattr',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'open_by_handle_at', 'name_to_handle_at', 'lookup_dcookie',
  'acct', 'swapon', 'swapoff', 'reboot', 'syslog', 'quotactl', 'vhangup', 'iopl', 'ioperm',
] as const;

type SyscallName = (typeof DENIED_SYSCALLS)[number];

interface ArchTable {
  /** AUDIT_ARCH_* value in `seccomp_data.arch`. */
  auditArch: number;
  /** Syscall numbers with this bit set belong to another ABI (x32) and are refused wholesale. */
  foreignAbiBit?: number;
  numbers: Partial<Record<SyscallName, number>>;
}

// From <asm/unistd_64.h> (x86_64) and <asm-generic/unistd.h> (aarch64).
const ARCHES: Partial<Record<NodeJS.Architecture, ArchTable>> = {
  x64: {
    auditArch: 0xc000003e,
    foreignAbiBit: 0x40000000,
    numbers: {
      ptrace: 101, process_vm_readv: 310, process_vm_writev: 311, kcmp: 312,
      perf_event_open: 298, bpf: 321, userfaultfd: 323,
      keyctl: 250, add_key: 248, request_key: 249,
      kexec_load: 246, kexec_file_load: 320, init_module: 175, finit_module: 313, delete_module: 176,
      mount: 165, umount2: 166, pivot_root: 155, chroot: 161, unshare: 272, setns: 308,
      open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442,
      io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427,
      open_by_handle_at: 304, name_to_handle_at: 303, lookup_dcookie: 212,
      acct: 163, swapon: 167, swapoff: 168, reboot: 169, syslog: 103, quotactl: 179, vhangup: 153, iopl: 172, ioperm: 173,
    },
  },
  arm64: {
    auditArch: 0xc00000b7,
    numbers: {
      ptrace: 117, process_vm_readv: 270, process_vm_writev: 271, kcmp: 272,
      perf_event_open: 241, bpf: 280, userfaultfd: 282,
      keyctl: 219, add_key: 217, request_key: 218,
      kexec_load: 104, kexec_file_load: 294, init_module: 105, finit_module: 273, delete_module: 106,
      mount: 40, umount2: 39, pivot_root: 41, chroot: 51, unshare: 97, setns: 268,
      open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442,
      io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427,
      open_by_handle_at: 265, name_to_handle_at: 264, lookup_dcookie: 18,
      acct: 89, swapon: 224, swapoff: 225, reboot: 142, syslog: 116, quotactl: 60, vhangup: 58,
    },
  },
};

const BPF_LD_W_ABS = 0x20;
const BPF_JMP_JEQ_K = 0x15;
const BPF_JMP_JGE_K = 0x35;
const BPF_RET_K = 0x06;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const SECCOMP_RET_ERRNO = 0x00050000;
const EPERM = 1;
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;

type Instruction = [code: number, jt: number, jf: number, k: number];

/**
 * The filter for `arch`, serialised as `struct sock_filter[]` in host byte order, or `undefined` on
 * an architecture without a syscall table here (the sandbox then relies on its other layers).
 * Calls from a foreign architecture or ABI are all refused.
 */
export function seccompProgram(arch: NodeJS.Architecture = process.arch): Buffer | undefined {
  const table = ARCHES[arch];
  if (table === undefined) return undefined;
  const denied = DENIED_SYSCALLS.map((name) => table.numbers[name]).filter((n): n is number => n !== undefined);
  // Layout: [arch check][load nr][foreign ABI check]?[one jeq per denied call][allow][deny]
  const head = table.foreignAbiBit === undefined ? 3 : 4;
  const allowAt = head + denied.length;
  const denyAt = allowAt + 1;
  const jumpTo = (from: number, target: number) => target - (from + 1);
  const program: Instruction[] = [
    [BPF_LD_W_ABS, 0, 0, OFFSET_ARCH],
    [BPF_JMP_JEQ_K, 0, jumpTo(1, denyAt), table.auditArch],
    [BPF_LD_W_ABS, 0, 0, OFFSET_NR],
  ];
  if (table.foreignAbiBit !== undefined) program.push([BPF_JMP_JGE_K, jumpTo(3, denyAt), 0, table.foreignAbiBit]);
  denied.forEach((nr, i) => program.push([BPF_JMP_JEQ_K, jumpTo(head + i, denyAt), 0, nr]));
  program.push([BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW], [BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM]);

  const bytes = Buffer.alloc(program.length * 8);
  program.forEach(([code, jt, jf, k], i) => {
    if (jt > 255 || jf > 255) throw new Error('seccomp jump out of range');
    const at = i * 8;
    writeU16(bytes, code, at);
    bytes.writeUInt8(jt, at + 2);
    bytes.writeUInt8(jf, at + 3);
    writeU32(bytes, k, at + 4);
  });
  return bytes;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function writeU16(bytes: Buffer, value: number, at: number): void {
  if (littleEndian) bytes.writeUInt16LE(value, at);
  else bytes.writeUInt16BE(value, at);
}

function writeU32(bytes: Buffer, value: number, at: number): void {
  if (littleEndian) bytes.writeUInt32LE(value >>> 0, at);
  else bytes.writeUInt32BE(value >>> 0, at);
}
