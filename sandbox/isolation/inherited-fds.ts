/**
 * Descriptors this process would leak into a child. Node and libuv open everything close-on-exec, but
 * a descriptor this process itself inherited without that flag (from a shell, a supervisor, a native
 * addon) passes through `spawn` into bubblewrap, and bubblewrap passes it on into the sandbox.
 */
import { readdirSync, readFileSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;

/**
 * The descriptors numbered `from` and above that are open without close-on-exec right now, read from
 * `/proc/self/fdinfo`. A child spawned with each of them overwritten (for example by `/dev/null` in
 * its `stdio` array) receives none of them. Empty where `/proc` is not mounted.
 */
export function inheritableDescriptors(from = 3): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const leaking: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < from) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile, or the directory handle readdir itself used
    }
    const flags = /^flags:\s*([0-7]+)/m.exec(info);
    if (flags?.[1] !== undefined && (parseInt(flags[1], 8) & O_CLOEXEC) === 0) leaking.push(fd);
  }
  return leaking.sort((a, b) => a - b);
}
