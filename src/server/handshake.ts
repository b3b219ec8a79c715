// The handshake's proof (SPEC §2.1): HMAC-SHA256 keyed with the passphrase
// over nonce ":" processServerId, compared in constant time.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

export function computeProof(passphrase: Buffer, nonce: string, processServerId: string): string {
  return createHmac('sha256', passphrase).update(`${nonce}:${processServerId}`).digest('hex');
}

export function proofMatches(passphrase: Buffer, nonce: string, processServerId: string, proof: string): boolean {
  if (!/^[0-9a-fA-F]{64}$/.test(proof)) return false;
  const expected = Buffer.from(computeProof(passphrase, nonce, processServerId), 'hex');
  return timingSafeEqual(expected, Buffer.from(proof, 'hex'));
}
