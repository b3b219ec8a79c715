// install.sh's copier: node dist/scripts/sync-app.js --from SRC --to DST [--dry-run]
// Copies the application files whose content differs, keeps modes, and says
// how many changed: a second run changes nothing.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { appFiles } from '../src/install/app-tree';
import { scriptArgs } from './script-args';

const values = scriptArgs(__filename, { from: { type: 'string' }, to: { type: 'string' }, 'dry-run': { type: 'boolean', default: false } });
if (!values.from || !values.to) {
  process.stderr.write('usage: sync-app --from SRC --to DST [--dry-run]\n');
  process.exit(2);
}
let changed = 0;
const files = appFiles(values.from);
for (const rel of files) {
  const src = join(values.from, rel);
  const dst = join(values.to, rel);
  const same = existsSync(dst) && statSync(dst).size === statSync(src).size && readFileSync(dst).equals(readFileSync(src));
  const mode = statSync(src).mode & 0o777;
  if (same && (statSync(dst).mode & 0o777) === mode) continue;
  changed++;
  if (values['dry-run']) continue;
  mkdirSync(dirname(dst), { recursive: true });
  if (!same) copyFileSync(src, dst);
  chmodSync(dst, mode);
}
process.stdout.write(`${changed} of ${files.length} files ${values['dry-run'] ? 'would change' : 'changed'}\n`);
