// The asynchronous call used by every I/O binding, and argument checks shared by them.
#pragma once
#include <napi.h>

#include <climits>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "errors.h"

namespace mtagent {

inline constexpr uint64_t kDirectAlignment = 4096;
inline constexpr double kMaxSafeInteger = 9007199254740991.0;

// One asynchronous call: `work` runs on a pool thread and must not touch JS;
// `settle` runs back on the JS thread and builds the resolved value.
class IoCall : public Napi::AsyncWorker {
 public:
  using Work = std::function<void(SysError&)>;
  using Settle = std::function<Napi::Value(Napi::Env)>;

  IoCall(Napi::Env env, const char* name, Work work, Settle settle)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        settle_(std::move(settle)) {}

  // Buffers the thread reads or writes stay referenced until the call settles.
  void Retain(Napi::Value value) { retained_.push_back(Napi::Persistent(value)); }
  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

 protected:
  void Execute() override { work_(error_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (error_.failed()) {
      deferred_.Reject(MakeSysError(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(settle_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Settle settle_;
  SysError error_;
  std::vector<Napi::Reference<Napi::Value>> retained_;
};

inline int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) ThrowType(info.Env(), "fd must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > INT_MAX || v != static_cast<double>(static_cast<int64_t>(v))) {
    ThrowRange(info.Env(), "fd must be a non-negative integer");
  }
  return static_cast<int>(v);
}

inline uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > kMaxSafeInteger || v != static_cast<double>(static_cast<uint64_t>(v))) {
    ThrowRange(info.Env(), std::string(name) + " must be a non-negative safe integer");
  }
  return static_cast<uint64_t>(v);
}

inline Napi::Buffer<uint8_t> ArgBuffer(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsBuffer()) ThrowType(env, name + " must be a Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

}  // namespace mtagent
