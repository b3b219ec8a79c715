// The configuration file (README, Configuration): its schema, defaults (the failback
// policy) and the one-line errors that name the key.
import { z } from 'zod';
import { PAIR_ID } from '../protocol/constants';

const path = z.string().min(1, 'must not be empty');
const positiveInt = z.number().int().positive();

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be HOST:PORT');

export const configSchema = z
  .object({
    agentId: z.string().regex(PAIR_ID, 'must match [A-Za-z0-9._-]{1,64}'),
    dataDir: path.default('/var/lib/mtagent'),
    listen: z
      .object({ host: z.string().min(1).default('0.0.0.0'), port: z.number().int().min(1).max(65535).default(9443) })
      .strict()
      .default({ host: '0.0.0.0', port: 9443 }),
    tls: z.object({ cert: path, key: path, clientCa: path.nullable().default(null) }).strict(),
    passphraseFile: path,
    retention: z
      .object({ path: path.default('/mnt/retention'), maxBytes: positiveInt.nullable().default(null) })
      .strict()
      .default({ path: '/mnt/retention', maxBytes: null }),
    policy: z
      .object({
        rpoThresholdSeconds: positiveInt.default(900),
        retentionSeconds: positiveInt.default(86_400),
        appConsistentFrequencySeconds: positiveInt.default(3600),
      })
      .strict()
      .default({ rpoThresholdSeconds: 900, retentionSeconds: 86_400, appConsistentFrequencySeconds: 3600 }),
    configServer: z
      .object({
        url: z.string().url().refine((u) => u.startsWith('https://'), 'must be an https:// URL'),
        heartbeatSeconds: positiveInt.default(30),
        caFile: path.nullable().default(null),
        fingerprint: z
          .string()
          .transform((s) => s.replace(/:/g, '').toLowerCase())
          .refine((s) => /^[0-9a-f]{64}$/.test(s), 'must be a SHA-256 fingerprint: 64 hex digits, colons allowed')
          .nullable()
          .default(null),
      })
      .strict()
      .nullable()
      .default(null),
    metrics: z.object({ listen: hostPort }).strict().nullable().default({ listen: '127.0.0.1:9464' }),
    pairs: z
      .array(
        z
          .object({
            id: z.string().regex(PAIR_ID, 'must match [A-Za-z0-9._-]{1,64}'),
            target: path,
            group: z.string().min(1).max(256).nullable().optional(),
            sizeBytes: positiveInt
              .refine((n) => n % 512 === 0, 'must be a multiple of 512')
              .nullable()
              .optional(),
          })
          .strict(),
      )
      .default([])
      .superRefine((pairs, ctx) => {
        const seen = new Set<string>();
        pairs.forEach((p, i) => {
          if (seen.has(p.id)) ctx.addIssue({ code: 'custom', message: `duplicate pair id ${p.id}`, path: [i, 'id'] });
          seen.add(p.id);
        });
      }),
  })
  .strict();

export type AgentConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;

/** Edit distance, for a key that is nearly a known one. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] as number;
      row[j] = Math.min(above + 1, (row[j - 1] as number) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] as number;
}

/** The keys an object of the schema takes at `path` (array indexes skipped). */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let node: z.ZodType = configSchema;
  for (const step of [...path, null]) {
    // Through defaults, nullables, optionals and arrays to the object under them.
    for (;;) {
      const def = (node as unknown as { def: { type: string; innerType?: z.ZodType; element?: z.ZodType } }).def;
      if ((def.type === 'default' || def.type === 'nullable' || def.type === 'optional' || def.type === 'pipe') && def.innerType) node = def.innerType;
      else if (def.type === 'array' && def.element) node = def.element;
      else break;
    }
    if (!(node instanceof z.ZodObject)) return [];
    if (step === null) return Object.keys(node.shape);
    if (typeof step === 'number') continue;
    const next = (node.shape as Record<string, z.ZodType>)[String(step)];
    if (next === undefined) return [];
    node = next;
  }
  return [];
}

function didYouMean(key: string, path: readonly PropertyKey[]): string {
  const near = knownKeysAt(path)
    .map((k) => ({ k, d: k.toLowerCase() === key.toLowerCase() ? 0 : distance(k, key) }))
    .filter(({ d }) => d <= 2)
    .sort((a, b) => a.d - b.d)[0];
  return near ? ` (did you mean ${near.k}?)` : '';
}

function where(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || '(top level)';
}

/** `pairs[1].sizeBytes: must be a multiple of 512`: one problem, on one line. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const at = where(issue.path);
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    const first = keys[0] as string;
    return `${at === '(top level)' ? '' : `${at}.`}${first}: unknown key${didYouMean(first, issue.path)}${keys.length > 1 ? ` (also ${keys.slice(1).join(', ')})` : ''}`;
  }
  return `${at}: ${issue.message}`;
}

/**
 * The problem to name first: an unknown key before anything else, since a
 * misspelt key also makes the one it was meant to be look missing.
 */
export function firstIssue(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue | undefined {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0];
}
