// mtagent's native addon: the few system calls Node's fs lacks or does slowly.
// No product logic lives here; src/native/ wraps every export with types.
#include <napi.h>

#include "crc32c.h"
#include "io.h"
#include "system.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  mtagent::InitIo(env, exports);
  mtagent::InitCrc32c(env, exports);
  mtagent::InitSystem(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(mtagent_native, Init)
