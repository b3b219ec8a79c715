// Text messages of the replication protocol (docs/protocol.md): their types, and the
// parser that turns a client's JSON into one of them or a named error.
import { z } from 'zod';
import { MAX_TAG_NAME } from './constants';
import { ProtocolError } from './errors';

const uint = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const seq = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const stream = z.number().int().nonnegative().max(0xffffffff);

const hello = z.object({ type: z.literal('hello'), protocol: z.number(), processServerId: z.string().min(1).max(256), proof: z.string() });
const open = z.object({ type: z.literal('open'), pair: z.string(), diskBytes: uint, sectorBytes: uint });
const tag = z.object({
  type: z.literal('tag'),
  stream,
  seq,
  time: uint,
  kind: z.enum(['app', 'crash']),
  name: z.string().min(1).max(MAX_TAG_NAME),
  group: z.string().min(1).max(256).nullable().optional(),
});
const tick = z.object({ type: z.literal('tick'), stream, seq, time: uint });
const resyncStart = z.object({ type: z.literal('resync-start'), stream, seq, time: uint });
const resyncEnd = z.object({ type: z.literal('resync-end'), stream, seq, time: uint });
const checksums = z.object({ type: z.literal('checksums'), stream, id: uint, offset: uint, length: uint, blockBytes: uint });
const close = z.object({ type: z.literal('close'), stream });

const clientMessage = z.discriminatedUnion('type', [hello, open, tag, tick, resyncStart, resyncEnd, checksums, close]);

export type HelloMessage = z.infer<typeof hello>;
export type OpenMessage = z.infer<typeof open>;
export type TagMessage = z.infer<typeof tag>;
export type TickMessage = z.infer<typeof tick>;
export type ResyncMessage = z.infer<typeof resyncStart> | z.infer<typeof resyncEnd>;
export type ChecksumsRequest = z.infer<typeof checksums>;
export type CloseMessage = z.infer<typeof close>;
export type ClientMessage = z.infer<typeof clientMessage>;
export type ControlItemMessage = TagMessage | TickMessage | ResyncMessage;

export interface ChallengeMessage {
  type: 'challenge';
  protocol: number;
  agentId: string;
  nonce: string;
}
export interface WelcomeMessage {
  type: 'welcome';
  sessionId: string;
  windowBytes: number;
}
export interface OpenedMessage {
  type: 'opened';
  pair: string;
  stream: number;
  durableSeq: number;
  needsResync: boolean;
}
export interface AckMessage {
  type: 'ack';
  stream: number;
  durableSeq: number;
}
export interface ChecksumsResponse {
  type: 'checksums';
  stream: number;
  id: number;
  offset: number;
  blockBytes: number;
  sha256: string[];
}
export interface ClosedMessage {
  type: 'closed';
  stream: number;
  durableSeq: number;
}
export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
  stream?: number;
  seq?: number;
}
export type AgentMessage = ChallengeMessage | WelcomeMessage | OpenedMessage | AckMessage | ChecksumsResponse | ClosedMessage | ErrorMessage;

const KNOWN_TYPES = new Set(['hello', 'open', 'tag', 'tick', 'resync-start', 'resync-end', 'checksums', 'close']);

/** Parses one text message from a process server; anything else is `malformed`. */
export function parseClientMessage(text: string): ClientMessage {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError('malformed', `unparsable JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ProtocolError('malformed', 'a message must be a JSON object');
  const type = (json as { type?: unknown }).type;
  if (typeof type !== 'string' || !KNOWN_TYPES.has(type)) throw new ProtocolError('malformed', `unknown message type ${JSON.stringify(type)}`);
  const r = clientMessage.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.join('.') || 'message';
    const stream = typeof (json as { stream?: unknown }).stream === 'number' ? ((json as { stream: number }).stream) : null;
    throw new ProtocolError('malformed', `${type}: ${where}: ${issue?.message ?? 'invalid'}`, { stream });
  }
  return r.data;
}
