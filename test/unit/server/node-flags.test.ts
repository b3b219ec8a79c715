// The daemon's Node options are written in four places that cannot import
// them; this keeps them the same.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../../src/package-root';
import { DAEMON_NODE_FLAGS } from '../../../src/server/node-flags';

describe('DAEMON_NODE_FLAGS', () => {
  it('are the ones the systemd unit, npm start and the installed wrapper pass', () => {
    const flags = DAEMON_NODE_FLAGS.join(' ');
    expect(flags).toMatch(/^--/);
    const read = (p: string): string => readFileSync(join(packageRoot, p), 'utf8');
    expect(read('scripts/mtagent.service')).toContain(`ExecStart=@NODE@ ${flags} @INSTALL_DIR@/dist/src/cli/main.js run`);
    expect((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start).toBe(`node ${flags} dist/src/cli/main.js start`);
    expect(read('scripts/install.sh')).toContain(`exec $NODE ${flags} $INSTALL_DIR/dist/src/cli/main.js`);
  });
});
