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

/** `pairs[1].sizeBytes: must be a multiple of 512` — the first problem, on one line. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || '(top level)';
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    return `${where === '(top level)' ? '' : `${where}.`}${keys[0]}: unknown key${keys.length > 1 ? ` (also ${keys.slice(1).join(', ')})` : ''}`;
  }
  return `${where}: ${issue.message}`;
}
