import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

interface PackageJson {
  name: string;
  version: string;
}

function findPackageRoot(start: string): string {
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as PackageJson;
      if (pkg.name === 'mtagent') return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`mtagent's package.json not found above ${start}`);
    dir = parent;
  }
}

/** The folder holding mtagent's package.json, whether running from src/ (tests) or dist/src/ (built). */
export const packageRoot: string = findPackageRoot(__dirname);

export const packageVersion: string = (
  JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as PackageJson
).version;
