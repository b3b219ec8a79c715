import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createDaemonLogger, logDir } from '../../src/log';
import { useTempDir } from '../helpers/temp-dir';

const tempDir = useTempDir();

describe("the daemon's log outside systemd", () => {
  it('goes to files in dataDir as well, a new one past the size, the oldest dropped', async () => {
    const dataDir = tempDir();
    const log = await createDaemonLogger(dataDir, { bytes: '4k', kept: 2 });
    for (let i = 0; i < 400; i++) {
      log.info({ pair: 'p', seq: i }, 'something worth a line');
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise<void>((r) => log.flush(() => r()));
    await new Promise((r) => setTimeout(r, 100));
    const files = readdirSync(logDir(dataDir)).filter((n) => /^mtagent\.\d+\.log$/.test(n));
    // The one being written and two before it.
    expect(files.length).toBe(3);
    for (const f of files) expect(statSync(join(logDir(dataDir), f)).size).toBeLessThan(16 * 1024);
    const kept = files.map((f) => readFileSync(join(logDir(dataDir), f), 'utf8')).join('');
    expect(kept).toContain('"seq":399,');
    expect(kept).not.toContain('"seq":0,');
  });
});
