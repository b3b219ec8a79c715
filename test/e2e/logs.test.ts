// What the daemon's log says of a short run: every refusal, disconnect,
// takeover and resync once, with its pair and seq; the commands' requests
// not at all (they are at debug).
import { describe, expect, it, vi } from 'vitest';
import { RunningDaemon, cli, makeInstallation } from '../helpers/daemon';
import { useFileTempDirs } from '../helpers/temp-dir';

const MiB = 1024 * 1024;
const temp = useFileTempDirs();

/** A daemon with one 1 MiB pair `p`. */
async function startDaemon(): Promise<RunningDaemon> {
  const daemon = new RunningDaemon(await makeInstallation(temp('mtagent-logs-'), [{ id: 'p', sizeBytes: MiB }]));
  await daemon.start();
  return daemon;
}

interface Line {
  msg: string;
  pair?: string;
  seq?: number;
  code?: string;
  [k: string]: unknown;
}

describe("the daemon's log", () => {
  it('says each refusal, disconnect and resync once, with pair and seq, and no line per status', async () => {
    const daemon = await startDaemon();
    try {
      const a = await daemon.client({ processServerId: 'ps-a' });
      await expect(a.open('nope', MiB)).rejects.toMatchObject({ code: 'unknown-pair' });
      const o = await a.open('p', MiB);
      a.sendJson({ type: 'resync-start', stream: o.stream, seq: 1, time: 1_000_000 });
      a.sendRecords([{ stream: o.stream, seq: 2, offset: 0, time: 2_000_000, data: Buffer.alloc(4096, 1), resync: true }]);
      a.sendJson({ type: 'resync-end', stream: o.stream, seq: 3, time: 3_000_000 });
      a.sendRecords([{ stream: o.stream, seq: 5, offset: 0, time: 4_000_000, data: Buffer.alloc(4096, 2) }]);
      for (let i = 0; i < 3; i++) expect((await cli(['status', '--config', daemon.configPath])).code).toBe(0);
      // Another process server takes the pair over; the first one goes away.
      const b = await daemon.client({ processServerId: 'ps-b' });
      await b.open('p', MiB);
      await a.close();
      await vi.waitFor(() => expect(daemon.output).toContain('"process server disconnected"'), { timeout: 5000 });
      await b.close();
      await vi.waitFor(() => expect(lines(daemon.output).filter((l) => l.msg === 'process server disconnected')).toHaveLength(2), { timeout: 5000 });
      const log = lines(daemon.output);
      const one = (msg: string): Line[] => log.filter((l) => l.msg.startsWith(msg));
      expect(one('open refused')).toEqual([expect.objectContaining({ pair: 'nope', code: 'unknown-pair', level: 'warn' })]);
      expect(one('stream ended').map((l) => ({ pair: l.pair, code: l.code, seq: l.seq }))).toEqual([
        { pair: 'p', code: 'seq-gap', seq: 5 },
        // The seq-gap ended the first stream; the takeover found none to end.
      ]);
      expect(one('resync started')).toEqual([expect.objectContaining({ pair: 'p', seq: 1 })]);
      expect(one('resync ended')).toEqual([expect.objectContaining({ pair: 'p', seq: 3 })]);
      expect(one('pair opened').map((l) => l.processServerId)).toEqual(['ps-a', 'ps-b']);
      expect(one('process server disconnected').map((l) => l.processServerId).sort()).toEqual(['ps-a', 'ps-b']);
      expect(one('control request')).toEqual([]);
    } finally {
      await daemon.stop();
    }
  }, 60_000);

  it('says a takeover on the stream it ends', async () => {
    const daemon = await startDaemon();
    try {
      const a = await daemon.client({ processServerId: 'ps-a' });
      await a.open('p', MiB);
      const b = await daemon.client({ processServerId: 'ps-b' });
      await b.open('p', MiB);
      await vi.waitFor(() => expect(lines(daemon.output).filter((l) => l.msg === 'pair opened')).toHaveLength(2), { timeout: 5000 });
      const log = lines(daemon.output);
      expect(log.filter((l) => l.msg === 'stream ended').map((l) => ({ pair: l.pair, code: l.code }))).toEqual([{ pair: 'p', code: 'superseded' }]);
      expect(log.filter((l) => l.msg === 'pair opened').map((l) => l.tookOver)).toEqual([false, true]);
      await a.close();
      await b.close();
    } finally {
      await daemon.stop();
    }
  }, 60_000);
});

function lines(output: string): Line[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}
