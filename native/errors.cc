#include "errors.h"

#include <cerrno>
#include <cstring>

namespace mtagent {

std::string ErrnoName(int errnum) {
  const char* name = strerrorname_np(errnum);
  if (name != nullptr) return name;
  return "E" + std::to_string(errnum);
}

Napi::Error MakeSysError(Napi::Env env, const SysError& e) {
  std::string code = e.code.empty() ? ErrnoName(e.errnum) : e.code;
  std::string message = code + ": " + std::strerror(e.errnum) + ", " + e.syscall;
  if (!e.path.empty()) message += " '" + e.path + "'";
  if (!e.detail.empty()) message += " (" + e.detail + ")";
  Napi::Error err = Napi::Error::New(env, message);
  Napi::Object obj = err.Value();
  obj.Set("code", Napi::String::New(env, code));
  obj.Set("errno", Napi::Number::New(env, -e.errnum));
  obj.Set("syscall", Napi::String::New(env, e.syscall));
  if (!e.path.empty()) obj.Set("path", Napi::String::New(env, e.path));
  return err;
}

void ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError err = Napi::TypeError::New(env, message);
  err.Value().Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw err;
}

void ThrowRange(Napi::Env env, const std::string& message) {
  Napi::RangeError err = Napi::RangeError::New(env, message);
  err.Value().Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw err;
}

}  // namespace mtagent
