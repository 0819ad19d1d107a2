/**
 * A `bwrap` tool's module as one self-contained JavaScript file, so the sandbox needs neither the
 * project directory, nor `node_modules`, nor a TypeScript loader: only that file, read-only.
 *
 * Why not tsx inside the sandbox: on Node 20 tsx's loader hooks run on a second V8 isolate, which
 * needs about 2.5 GB of address space (the default limits give 1.25 GB), tsx's WebAssembly lexer
 * cannot reserve its guard region under RLIMIT_AS, transpiling the module graph opens more files
 * than the default 64, and it all costs 450 to 750 ms per cold start. A bundle made once on the host
 * by esbuild (the compiler tsx itself uses) starts in about 100 ms within the default limits.
 *
 * What a bundle changes for the tool: `import.meta.url` is the bundle's; files next to the module are
 * not there unless bound (`permissions.binds`); native addons (`.node`) cannot be bundled (the
 * bundle fails with a {@link ToolModuleError}). Bundles are made once per module per bundler: a
 * changed module is picked up by a new runner.
 */
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ensureError } from '../../common/errors.ts';
import { SANDBOX_ID } from '../isolation/index.ts';
import { ToolModuleError } from './errors.ts';

/** One bundled module: a directory holding only it, to bind read-only, and its file URL inside. */
export interface ToolBundle {
  /** Host directory holding the bundle and nothing else. */
  dir: string;
  /** File URL of the bundle (the same path inside the sandbox). */
  url: string;
}

/** Makes and caches bundles in a private temporary directory. */
export interface ToolBundler {
  /** The bundle of `module` (made on the first request). @throws ToolModuleError when it cannot be bundled. */
  bundle(module: string, tool: string): Promise<ToolBundle>;
  /** Removes every bundle. Idempotent. */
  close(): Promise<void>;
}

/** The part of esbuild's API used here. */
interface Esbuild {
  build(options: Record<string, unknown>): Promise<unknown>;
}

let esbuild: Promise<Esbuild> | undefined;

/** esbuild, resolved from tsx's own dependency so it is the same one that compiles troupe. */
function loadEsbuild(): Promise<Esbuild> {
  esbuild ??= (async () => {
    const tsxPackage = createRequire(import.meta.url).resolve('tsx/package.json');
    const entry = createRequire(tsxPackage).resolve('esbuild');
    const loaded = (await import(pathToFileURL(entry).href)) as Esbuild & { default?: Esbuild };
    return typeof loaded.build === 'function' ? loaded : loaded.default!;
  })();
  return esbuild;
}

/**
 * `require` for the few CommonJS dependencies that call it on Node built-ins; everything else is
 * inside the bundle.
 */
const REQUIRE_SHIM = "import { createRequire as __troupeCreateRequire } from 'node:module'; const require = __troupeCreateRequire(import.meta.url);";

/** Creates a bundler; its directory is created on the first bundle. */
export function createToolBundler(): ToolBundler {
  let root: Promise<string> | undefined;
  const bundles = new Map<string, Promise<ToolBundle>>();
  let closed = false;

  const make = async (module: string, tool: string): Promise<ToolBundle> => {
    let entry: string;
    try {
      entry = fileURLToPath(module);
    } catch (e: unknown) {
      throw new ToolModuleError(tool, module, 'failed', `tool "${tool}": its module ${module} is not a file: ${ensureError(e).message}`);
    }
    // The bundle holds the module's code and everything it imports (JSON included), so only the
    // sandbox may read it: as root, the sandbox runs as host gid 65534, which gets group read access
    // to files root still owns (so no process of that uid can change them); otherwise it runs as
    // this very user.
    const asRoot = process.getuid?.() === 0;
    root ??= mkdtemp(join(tmpdir(), 'troupe-tools-')).then(async (made) => {
      await chmod(made, asRoot ? 0o711 : 0o700);
      return made;
    });
    const dir = join(await root, createHash('sha256').update(module).digest('hex').slice(0, 16));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, 'tool.mjs');
    try {
      await (await loadEsbuild()).build({
        entryPoints: [entry],
        outfile: file,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: `node${process.versions.node.split('.')[0]}`,
        // Class and function names survive, so the tool's errors keep their `name`.
        keepNames: true,
        banner: { js: REQUIRE_SHIM },
        logLevel: 'silent',
      });
    } catch (e: unknown) {
      throw new ToolModuleError(tool, module, 'failed', `tool "${tool}": cannot bundle its module ${module} for the sandbox: ${ensureError(e).message}`, { cause: e });
    }
    if (asRoot) {
      await chown(dir, 0, SANDBOX_ID);
      await chown(file, 0, SANDBOX_ID);
      await chmod(dir, 0o750);
      await chmod(file, 0o640);
    } else {
      await chmod(file, 0o600);
    }
    return { dir, url: pathToFileURL(file).href };
  };

  return {
    bundle(module, tool) {
      if (closed) return Promise.reject(new Error('the tool bundler is closed'));
      let made = bundles.get(module);
      if (made === undefined) {
        made = make(module, tool);
        bundles.set(module, made);
        // A module that failed may be fixed: try again next time.
        made.catch(() => bundles.delete(module));
      }
      return made;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled(bundles.values());
      const dir = await root?.catch(() => undefined);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}
