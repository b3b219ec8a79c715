// The shape of the source: no module imports itself back through others,
// and the folders of src/ depend on each other one way only, so that each
// layer can be read (and tested) without the ones above it: protocol and
// journal know nothing of the engine, recovery knows its history through a
// narrow view, and only the composition root (app/) and the commands see all.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root';

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Relative imports of a file, resolved to files (type-only imports included: they couple as much). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\()'(\.{1,2}\/[^']+)'/g)) {
    const base = resolve(dirname(file), (m[1] as string).replace(/\.js$/, ''));
    const found = [`${base}.ts`, join(base, 'index.ts')].find((p) => existsSync(p));
    if (found) out.push(found);
  }
  return out;
}

function cycleIn(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): string[] | null => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (state.get(next) === undefined) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of graph.keys()) {
    if (state.get(node) === undefined) {
      const found = visit(node);
      if (found) return found;
    }
  }
  return null;
}

const src = join(packageRoot, 'src');
const files = [...sources(src), ...sources(join(packageRoot, 'scripts'))];
const fileGraph = new Map(files.map((f) => [f, importsOf(f)]));

/** The folder of src/ a file is in; top-level files are folders of their own. */
function folderOf(file: string): string {
  return relative(src, file).split('/')[0] as string;
}

describe('layering', () => {
  it('has no import cycles between modules', () => {
    const cycle = cycleIn(fileGraph);
    expect(cycle?.map((f) => relative(packageRoot, f)) ?? null).toBeNull();
  });

  it('has no cycles between the folders of src/', () => {
    const folders = new Map<string, Set<string>>();
    for (const [file, imports] of fileGraph) {
      if (!file.startsWith(src)) continue;
      const from = folderOf(file);
      const set = folders.get(from) ?? new Set<string>();
      for (const to of imports) if (to.startsWith(src) && folderOf(to) !== from) set.add(folderOf(to));
      folders.set(from, set);
    }
    expect(cycleIn(new Map([...folders].map(([k, v]) => [k, [...v]])))).toBeNull();
  });

  it('keeps the lower layers free of the engine, the endpoint and the commands', () => {
    const forbidden: Record<string, string[]> = {
      native: ['journal', 'engine', 'apply', 'recovery', 'server', 'app', 'cli'],
      protocol: ['journal', 'engine', 'server', 'app', 'cli'],
      journal: ['engine', 'apply', 'recovery', 'server', 'store', 'app', 'cli'],
      apply: ['engine', 'recovery', 'server', 'app', 'cli'],
      recovery: ['engine', 'server', 'control', 'app', 'cli'],
      retention: ['engine', 'server', 'app', 'cli'],
      engine: ['server', 'control', 'app', 'cli', 'testfailover', 'nbd'],
      server: ['control', 'app', 'cli'],
      nbd: ['journal', 'engine', 'apply', 'recovery', 'server', 'testfailover', 'control', 'app', 'cli'],
      testfailover: ['server', 'control', 'app', 'cli'],
    };
    const offending: string[] = [];
    for (const [file, imports] of fileGraph) {
      if (!file.startsWith(src)) continue;
      const banned = forbidden[folderOf(file)] ?? [];
      for (const to of imports) {
        if (!to.startsWith(src)) offending.push(`${relative(packageRoot, file)} imports ${relative(packageRoot, to)}, outside src/`);
        else if (banned.includes(folderOf(to))) offending.push(`${relative(packageRoot, file)} imports ${relative(packageRoot, to)}`);
      }
    }
    expect(offending).toEqual([]);
  });
});
