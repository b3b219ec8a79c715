// CRC-32C of A‖B from the CRCs of A and B and the length of B (zlib's
// crc32_combine, for the Castagnoli polynomial). A write's journal record
// covers its header and its payload; the payload's CRC came with it from the
// process server and was checked on arrival, so the record's CRC is made from
// that one and the header's instead of a second pass over the payload.

/** The Castagnoli polynomial, bit-reflected. */
const POLY = 0x82f63b78;

/** a(x)·b(x) modulo the polynomial, both bit-reflected (x^0 is the top bit). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  let bb = b;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= bb;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    bb = (bb & 1) !== 0 ? (bb >>> 1) ^ POLY : bb >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) modulo the polynomial. */
const X2N = new Uint32Array(32);
{
  let p = 1 << 30; // x^1
  X2N[0] = p;
  for (let k = 1; k < 32; k++) {
    p = multModP(p, p);
    X2N[k] = p;
  }
}

/** x^(n·2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  let kk = k;
  for (let nn = n; nn > 0; nn = Math.floor(nn / 2)) {
    if (nn % 2 === 1) p = multModP(X2N[kk & 31] as number, p);
    kk++;
  }
  return p;
}

/** crc32c(A‖B), given crc32c(A), crc32c(B) and B's length in bytes. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA) ^ crcB) >>> 0;
}
