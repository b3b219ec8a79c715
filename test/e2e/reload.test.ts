// SIGHUP: pairs added and removed without dropping the connection; a removed
// pair keeps its retention until `mtagent pair purge`.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ErrorMessage } from '../../src/protocol/messages';
import { RunningDaemon, cli, makeInstallation } from '../helpers/daemon';

const MiB = 1024 * 1024;

describe('SIGHUP reload', () => {
  it('adds and removes pairs without dropping other streams, keeping retention until purge', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-hup-'));
    try {
      const configPath = await makeInstallation(root, [{ id: 'keep', sizeBytes: MiB }, { id: 'gone', sizeBytes: MiB }]);
      const daemon = new RunningDaemon(configPath);
      await daemon.start();
      const c = await daemon.client();
      const keep = await c.open('keep', MiB);
      const gone = await c.open('gone', MiB);
      c.sendRecords([
        { stream: keep.stream, seq: 1, offset: 0, time: 1, data: Buffer.alloc(4096, 1) },
        { stream: gone.stream, seq: 1, offset: 0, time: 1, data: Buffer.alloc(4096, 2) },
      ]);
      await c.next((m) => m.type === 'ack' && m.stream === gone.stream);
      await expect(c.open('new', MiB)).rejects.toMatchObject({ code: 'unknown-pair' });

      writeFileSync(configPath, readFileSync(configPath, 'utf8').replace('  - { id: gone, target: datastore/gone.img, sizeBytes: 1048576 }', `  - { id: new, target: datastore/new.img, sizeBytes: ${MiB} }`).replace('retentionSeconds: 86400', 'retentionSeconds: 7200'));
      const ended = c.next((m) => m.type === 'error' && m.stream === gone.stream) as Promise<ErrorMessage>;
      daemon.proc?.kill('SIGHUP');
      expect(await ended).toMatchObject({ code: 'unknown-pair' });
      // The same connection carries on: the kept pair streams, the new one opens.
      c.sendRecords([{ stream: keep.stream, seq: 2, offset: 4096, time: 2, data: Buffer.alloc(4096, 3) }]);
      await c.next((m) => m.type === 'ack' && m.stream === keep.stream && m.durableSeq >= 2);
      const added = await c.open('new', MiB);
      expect(added).toMatchObject({ durableSeq: 0, needsResync: true });
      await expect(c.open('gone', MiB)).rejects.toMatchObject({ code: 'unknown-pair' });
      expect(c.closed).toBe(false);
      await c.close();

      const status = JSON.parse((await cli(['status', '--config', configPath, '--json'])).stdout) as { pairs: Array<{ pair: string; state: string; durableSeq: number; lastError: string | null }> };
      expect(status.pairs.find((p) => p.pair === 'gone')).toMatchObject({ state: 'error', durableSeq: 1, lastError: expect.stringContaining('pair purge') });
      const purge = await cli(['pair', 'purge', 'gone', '--config', configPath]);
      expect(purge.code, purge.stderr).toBe(0);
      const after = JSON.parse((await cli(['status', '--config', configPath, '--json'])).stdout) as { pairs: Array<{ pair: string }> };
      expect(after.pairs.map((p) => p.pair).sort()).toEqual(['keep', 'new']);
      const refused = await cli(['pair', 'purge', 'keep', '--config', configPath]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/still in the configuration/);
      expect(daemon.output).toContain('"configuration reloaded"');
      // A retention cap below what the pairs need is refused, and the agent runs on as it was.
      writeFileSync(configPath, readFileSync(configPath, 'utf8').replace(/maxBytes: null/, 'maxBytes: 1000000'));
      daemon.proc?.kill('SIGHUP');
      for (let i = 0; i < 100 && !daemon.output.includes('cannot be applied'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(daemon.output).toMatch(/retention.maxBytes 1000000 is below the \d+ bytes 2 pair\(s\) need.*SIGHUP: the configuration cannot be applied; keeping the running one/);
      expect(daemon.alive).toBe(true);
      expect(await daemon.stop()).toBe(0);
      // Nor does the agent start with it.
      const tooSmall = await cli(['run', '--config', configPath]);
      expect(tooSmall.code).toBe(1);
      expect(tooSmall.stdout + tooSmall.stderr).toContain('retention.maxBytes 1000000 is below');
      writeFileSync(configPath, readFileSync(configPath, 'utf8').replace('maxBytes: 1000000', 'maxBytes: null'));
      // The purged pair's items may still be in the ingest log (its current segment is not recycled yet):
      // a restart neither brings the pair back nor trips over it.
      await daemon.start();
      const restarted = JSON.parse((await cli(['status', '--config', configPath, '--json'])).stdout) as { pairs: Array<{ pair: string }> };
      expect(restarted.pairs.map((p) => p.pair).sort()).toEqual(['keep', 'new']);
      expect(await daemon.stop()).toBe(0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 60_000);
});
