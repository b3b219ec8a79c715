// npm run package: mtagent-VERSION-linux-x64.tar.gz with dist/, the compiled
// addon, production node_modules, scripts/ (install.sh, the unit) and the
// README, under one top folder. Built with the tar library.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { create } from 'tar';
import { appFiles } from '../src/install/app-tree';
import { packageRoot, packageVersion } from '../src/package-root';
import { scriptArgs } from './script-args';

async function main(): Promise<void> {
  const values = scriptArgs(__filename, { out: { type: 'string', default: '.' } });
  const outDir = resolve(values.out);
  mkdirSync(outDir, { recursive: true });
  const name = `mtagent-${packageVersion}-linux-${process.arch}`;
  const file = join(outDir, `${name}.tar.gz`);
  const files = appFiles(packageRoot);
  create({ gzip: true, file, cwd: packageRoot, prefix: name, portable: true, sync: true }, files);
  process.stdout.write(`${file} (${files.length} files)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
