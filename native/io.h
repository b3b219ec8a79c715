#pragma once
#include <napi.h>

namespace mtagent {
void InitIo(Napi::Env env, Napi::Object exports);
}
