#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace mtagent {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as iSCSI and ext4 use it.
// `crc` is a previous result to continue from (0 to start), so
// Crc32c(b, Crc32c(a, 0)) == Crc32c(a + b, 0).
uint32_t Crc32cSoftware(uint32_t crc, const uint8_t* data, size_t len);
uint32_t Crc32cHardware(uint32_t crc, const uint8_t* data, size_t len);  // only if HardwareCrc32cAvailable()
bool HardwareCrc32cAvailable();
uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t len);  // the best of the two, chosen at load

void InitCrc32c(Napi::Env env, Napi::Object exports);

}  // namespace mtagent
