// Turning errno into JavaScript errors that carry code, errno, syscall and path.
#pragma once
#include <napi.h>
#include <string>

namespace mtagent {

// A failed system call, captured on the I/O thread (no JS values there).
struct SysError {
  int errnum = 0;
  std::string syscall;
  std::string path;
  std::string detail;  // extra words for the message, e.g. which buffer was misaligned
  std::string code;    // overrides the errno name when the addon itself refuses a call

  bool failed() const { return errnum != 0; }
  void set(int err, const char* call, const std::string& p = std::string(), const std::string& d = std::string()) {
    errnum = err;
    syscall = call;
    path = p;
    detail = d;
  }
  void refuse(int err, const char* refusalCode, const char* call, const std::string& d) {
    set(err, call, std::string(), d);
    code = refusalCode;
  }
};

// "ENOSPC" for ENOSPC; "E<number>" when the C library knows no name.
std::string ErrnoName(int errnum);

// Error with .code (errno name), .errno (negative, as Node's fs does), .syscall and .path.
Napi::Error MakeSysError(Napi::Env env, const SysError& e);

// Argument errors: TypeError/RangeError with a code, raised on the JS thread before any I/O.
[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& message);

}  // namespace mtagent
