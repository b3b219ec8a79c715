// Software path: slicing-by-8 tables. Hardware path: SSE4.2 crc32 instruction
// over three interleaved streams (the instruction has a latency of three
// cycles and a throughput of one), merged by multiplying by x^(8n) mod P,
// which is a table look-up per byte of the CRC.
#include "crc32c.h"

#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "errors.h"

namespace mtagent {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;
constexpr size_t kLong = 8192;
constexpr size_t kShort = 256;

uint32_t table[8][256];
uint32_t shiftLong[4][256];   // multiply a raw CRC by x^(8 * kLong)
uint32_t shiftShort[4][256];  // multiply a raw CRC by x^(8 * kShort)
bool hardware = false;

// GF(2) 32x32 matrices acting on CRC registers.
uint32_t MatrixTimes(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  while (vec) {
    if (vec & 1) sum ^= *mat;
    vec >>= 1;
    mat++;
  }
  return sum;
}

void MatrixSquare(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; n++) square[n] = MatrixTimes(mat, mat[n]);
}

// The operator that appends `len` zero bytes (len a power of two) to a raw CRC.
void ZerosOperator(uint32_t* out, size_t len) {
  uint32_t odd[32], even[32];
  odd[0] = kPoly;  // one zero bit
  uint32_t row = 1;
  for (int n = 1; n < 32; n++) {
    odd[n] = row;
    row <<= 1;
  }
  MatrixSquare(even, odd);  // two zero bits
  MatrixSquare(odd, even);  // four zero bits
  // Each square doubles; the next square gives one zero byte in `even`.
  for (;;) {
    MatrixSquare(even, odd);
    len >>= 1;
    if (len == 0) {
      std::memcpy(out, even, sizeof(even));
      return;
    }
    MatrixSquare(odd, even);
    len >>= 1;
    if (len == 0) {
      std::memcpy(out, odd, sizeof(odd));
      return;
    }
  }
}

void BuildShiftTable(uint32_t shift[4][256], size_t len) {
  uint32_t op[32];
  ZerosOperator(op, len);
  for (uint32_t n = 0; n < 256; n++) {
    shift[0][n] = MatrixTimes(op, n);
    shift[1][n] = MatrixTimes(op, n << 8);
    shift[2][n] = MatrixTimes(op, n << 16);
    shift[3][n] = MatrixTimes(op, n << 24);
  }
}

inline uint32_t Shift(const uint32_t shift[4][256], uint32_t crc) {
  return shift[0][crc & 0xff] ^ shift[1][(crc >> 8) & 0xff] ^ shift[2][(crc >> 16) & 0xff] ^ shift[3][crc >> 24];
}

void BuildTables() {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t crc = n;
    for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ kPoly : crc >> 1;
    table[0][n] = crc;
  }
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t crc = table[0][n];
    for (int k = 1; k < 8; k++) {
      crc = table[0][crc & 0xff] ^ (crc >> 8);
      table[k][n] = crc;
    }
  }
  BuildShiftTable(shiftLong, kLong);
  BuildShiftTable(shiftShort, kShort);
#if defined(__x86_64__)
  __builtin_cpu_init();
  hardware = __builtin_cpu_supports("sse4.2");
#endif
}

std::once_flag tablesOnce;

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // little-endian host (x86_64, aarch64 LE)
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t HardwareRaw(uint32_t crc0, const uint8_t* next, size_t len) {
  while (len && (reinterpret_cast<uintptr_t>(next) & 7) != 0) {
    crc0 = _mm_crc32_u8(crc0, *next++);
    len--;
  }
  uint64_t c0 = crc0;
  while (len >= kLong * 3) {
    uint64_t c1 = 0, c2 = 0;
    const uint8_t* end = next + kLong;
    do {
      c0 = _mm_crc32_u64(c0, Load64(next));
      c1 = _mm_crc32_u64(c1, Load64(next + kLong));
      c2 = _mm_crc32_u64(c2, Load64(next + kLong * 2));
      next += 8;
    } while (next < end);
    c0 = Shift(shiftLong, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
    c0 = Shift(shiftLong, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c2);
    next += kLong * 2;
    len -= kLong * 3;
  }
  while (len >= kShort * 3) {
    uint64_t c1 = 0, c2 = 0;
    const uint8_t* end = next + kShort;
    do {
      c0 = _mm_crc32_u64(c0, Load64(next));
      c1 = _mm_crc32_u64(c1, Load64(next + kShort));
      c2 = _mm_crc32_u64(c2, Load64(next + kShort * 2));
      next += 8;
    } while (next < end);
    c0 = Shift(shiftShort, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
    c0 = Shift(shiftShort, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c2);
    next += kShort * 2;
    len -= kShort * 3;
  }
  while (len >= 8) {
    c0 = _mm_crc32_u64(c0, Load64(next));
    next += 8;
    len -= 8;
  }
  crc0 = static_cast<uint32_t>(c0);
  while (len--) crc0 = _mm_crc32_u8(crc0, *next++);
  return crc0;
}
#endif

}  // namespace

bool HardwareCrc32cAvailable() {
  std::call_once(tablesOnce, BuildTables);
  return hardware;
}

uint32_t Crc32cSoftware(uint32_t crc, const uint8_t* next, size_t len) {
  std::call_once(tablesOnce, BuildTables);
  uint32_t c = ~crc;
  while (len && (reinterpret_cast<uintptr_t>(next) & 7) != 0) {
    c = table[0][(c ^ *next++) & 0xff] ^ (c >> 8);
    len--;
  }
  while (len >= 8) {
    uint64_t word = Load64(next) ^ c;
    c = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^ table[5][(word >> 16) & 0xff] ^
        table[4][(word >> 24) & 0xff] ^ table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^
        table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
    next += 8;
    len -= 8;
  }
  while (len--) c = table[0][(c ^ *next++) & 0xff] ^ (c >> 8);
  return ~c;
}

uint32_t Crc32cHardware(uint32_t crc, const uint8_t* data, size_t len) {
#if defined(__x86_64__)
  std::call_once(tablesOnce, BuildTables);
  return ~HardwareRaw(~crc, data, len);
#else
  return Crc32cSoftware(crc, data, len);
#endif
}

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t len) {
  return HardwareCrc32cAvailable() ? Crc32cHardware(crc, data, len) : Crc32cSoftware(crc, data, len);
}

namespace {

using CrcFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

// crc32c(buffer, seed = 0) -> unsigned 32-bit CRC. Synchronous: at several
// GB/s a record's CRC costs less than the hop to a thread would.
template <CrcFn fn>
Napi::Value CrcBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer() && !info[0].IsTypedArray()) ThrowType(env, "data must be a Buffer or Uint8Array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) ThrowType(env, "data must be a Buffer or Uint8Array");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  uint32_t seed = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) ThrowType(env, "seed must be a number");
    double d = info[1].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 4294967295.0 || d != static_cast<double>(static_cast<uint32_t>(d))) {
      ThrowRange(env, "seed must be an unsigned 32-bit integer");
    }
    seed = static_cast<uint32_t>(d);
  }
  return Napi::Number::New(env, fn(seed, bytes.Data(), bytes.ByteLength()));
}

}  // namespace

void InitCrc32c(Napi::Env env, Napi::Object exports) {
  bool hw = HardwareCrc32cAvailable();
  exports.Set("crc32c", Napi::Function::New(env, CrcBinding<Crc32c>, "crc32c"));
  exports.Set("crc32cSoftware", Napi::Function::New(env, CrcBinding<Crc32cSoftware>, "crc32cSoftware"));
  if (hw) exports.Set("crc32cHardware", Napi::Function::New(env, CrcBinding<Crc32cHardware>, "crc32cHardware"));
  exports.Set("crc32cImplementation", Napi::String::New(env, hw ? "sse4.2" : "software"));
}

}  // namespace mtagent
