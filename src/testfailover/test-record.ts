// What the daemon keeps of a running test failover on the retention volume,
// beside its scratch (`tests/<pairId>/test.json`), so that a restart serves
// it again at the same address. Written durably once the test is served;
// deleted first when it ends, so a crash while ending never brings back half
// a test.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { fsyncDir, writeFileDurable } from '../durable-files';

const recordSchema = z.object({
  version: z.literal(1),
  pair: z.string().min(1),
  group: z.string().nullable(),
  seq: z.number().int().nonnegative(),
  /** Source time of the point, µs; null when not known. */
  time: z.number().nullable(),
  /** POINT as the operator gave it. */
  spec: z.string(),
  since: z.string(),
  readOnly: z.boolean(),
  quotaBytes: z.number().int().positive(),
  /** TCP with TLS; null: the pair's Unix socket. */
  listen: z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }).nullable(),
});

export type TestRecord = z.infer<typeof recordSchema>;

export function testsDir(retentionDir: string): string {
  return join(retentionDir, 'tests');
}

export function testDir(retentionDir: string, pairId: string): string {
  return join(testsDir(retentionDir), pairId);
}

const RECORD = 'test.json';

export function writeTestRecord(dir: string, record: TestRecord): void {
  writeFileDurable(join(dir, RECORD), `${JSON.stringify(record, null, 2)}\n`, 0o600);
}

/** Ends a test's claim to be restored (its scratch may then be deleted at leisure). */
export function dropTestRecord(dir: string): void {
  if (!existsSync(join(dir, RECORD))) return;
  rmSync(join(dir, RECORD), { force: true });
  fsyncDir(dir);
}

export type FoundTest = { dir: string; pairId: string; record: TestRecord } | { dir: string; pairId: string; record: null; problem: string };

/** Every test folder on the volume, with its record or why it has none worth restoring. */
export function findTests(retentionDir: string): FoundTest[] {
  const root = testsDir(retentionDir);
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e): FoundTest => {
      const dir = join(root, e.name);
      const path = join(dir, RECORD);
      if (!existsSync(path)) return { dir, pairId: e.name, record: null, problem: 'no test.json (the test ended, or never finished starting)' };
      try {
        const record = recordSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
        if (record.pair !== e.name) return { dir, pairId: e.name, record: null, problem: `test.json names pair ${record.pair}` };
        return { dir, pairId: e.name, record };
      } catch (err) {
        return { dir, pairId: e.name, record: null, problem: `test.json is unreadable: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}` };
      }
    });
}

/** Deletes a pair's test from the volume, whether or not a daemon serves it (failover, commit or purge with no daemon running). */
export function discardTest(retentionDir: string, pairId: string): boolean {
  const dir = testDir(retentionDir, pairId);
  if (!existsSync(dir)) return false;
  dropTestRecord(dir);
  rmSync(dir, { recursive: true, force: true });
  return true;
}
