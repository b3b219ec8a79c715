// npm run package: mtagent-VERSION-linux-ARCH.tar.gz, a release a master
// target installs with nothing else: bin/mtagent, the Node.js runtime the
// addon was built against (runtime/node), dist/, the compiled addon,
// production node_modules, scripts/ (install.sh, the unit) and the docs,
// under one top folder. Unpack it and run scripts/install.sh once.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { create } from 'tar';
import { appFiles } from '../src/install/app-tree';
import { packageRoot, packageVersion } from '../src/package-root';
import { DAEMON_NODE_FLAGS } from '../src/server/node-flags';
import { scriptArgs } from './script-args';

/** The command at the top of the release: finds its tree wherever it is (a link to it included) and runs it with its own runtime. */
const COMMAND = `#!/bin/sh
# mtagent, run with the Node.js runtime this release was built with.
here="$(dirname "$(readlink -f "$0")")/.."
exec "$here/runtime/node" ${DAEMON_NODE_FLAGS.join(' ')} "$here/dist/src/cli/main.js" "$@"
`;

async function main(): Promise<void> {
  const values = scriptArgs(__filename, { out: { type: 'string', default: '.' } });
  const outDir = resolve(values.out);
  mkdirSync(outDir, { recursive: true });
  const name = `mtagent-${packageVersion}-linux-${process.arch}`;
  const file = join(outDir, `${name}.tar.gz`);
  const staging = mkdtempSync(join(tmpdir(), 'mtagent-package-'));
  try {
    const tree = join(staging, name);
    const files = appFiles(packageRoot);
    for (const rel of files) {
      mkdirSync(dirname(join(tree, rel)), { recursive: true });
      copyFileSync(join(packageRoot, rel), join(tree, rel));
    }
    mkdirSync(join(tree, 'bin'), { recursive: true });
    writeFileSync(join(tree, 'bin', 'mtagent'), COMMAND, { mode: 0o755 });
    chmodSync(join(tree, 'bin', 'mtagent'), 0o755);
    // The runtime that built the addon: its ABI is the addon's.
    mkdirSync(join(tree, 'runtime'), { recursive: true });
    copyFileSync(process.execPath, join(tree, 'runtime', 'node'));
    chmodSync(join(tree, 'runtime', 'node'), 0o755);
    create({ gzip: true, file, cwd: staging, portable: true, sync: true }, [name]);
    process.stdout.write(`${file} (${files.length + 2} files, Node.js ${process.version})\n`);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
