// The files of an installed mtagent: what `npm run package` ships and what
// install.sh copies. Production dependencies only, found by walking the
// package.json files (no npm needed on the target host).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

interface Manifest {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

function walk(dir: string, out: string[], root: string): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) walk(p, out, root);
    else if (st.isFile()) out.push(relative(root, p));
  }
}

/** Resolves `name` from inside package folder `from` the way Node does: nearest node_modules up the tree. */
function resolvePackage(root: string, from: string, name: string): string | null {
  let dir = from;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir === dirname(dir)) return null;
    dir = dirname(dir);
    if (dir.endsWith('node_modules')) dir = dirname(dir);
  }
}

/** Folders of every production dependency, transitively. */
export function productionPackages(root: string): string[] {
  const seen = new Set<string>();
  const visit = (pkgDir: string): void => {
    const m = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as Manifest;
    for (const name of Object.keys({ ...m.dependencies, ...m.optionalDependencies })) {
      const dir = resolvePackage(root, pkgDir, name);
      if (dir === null || seen.has(dir)) continue;
      seen.add(dir);
      visit(dir);
    }
  };
  visit(root);
  return [...seen].sort();
}

/**
 * What a release tree holds besides the application: the command, and the
 * Node.js runtime the addon was built against (`npm run package` adds them).
 */
export const RELEASE_FILES = ['bin/mtagent', 'runtime/node'] as const;

/** Relative paths of every file an installation needs (a nested package's files once). */
export function appFiles(root: string): string[] {
  const out: string[] = [];
  const needed = ['package.json', 'README.md', 'scripts/install.sh', 'scripts/mtagent.service', 'build/Release/mtagent_native.node', 'dist/scripts/sync-app.js', 'dist/scripts/script-args.js'];
  for (const f of needed) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing in ${root}: run npm install (or npm run build) first`);
    out.push(f);
  }
  for (const f of RELEASE_FILES) if (existsSync(join(root, f))) out.push(f);
  for (const d of ['dist/src', 'docs']) if (existsSync(join(root, d))) walk(join(root, d), out, root);
  for (const pkg of productionPackages(root)) {
    // Build leftovers of native packages are not needed at run time, only their .node files.
    const files: string[] = [];
    walk(pkg, files, root);
    out.push(...files.filter((f) => !/\/(build\/(Release\/obj|Debug)|deps|src|test)\//.test(f.slice(relative(root, pkg).length))));
  }
  return [...new Set(out)];
}
