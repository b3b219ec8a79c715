#pragma once
#include <napi.h>

namespace mtagent {
void InitSystem(Napi::Env env, Napi::Object exports);
}
