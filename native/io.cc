// Positional block I/O off the JavaScript thread: every call returns a Promise
// and runs on libuv's thread pool, so several may be in flight at once.
#include "io.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "io_call.h"

namespace mtagent {
namespace {

bool IsDirect(int fd, SysError& err, const char* call) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) {
    err.set(errno, call);
    return false;
  }
  return (fl & O_DIRECT) != 0;
}

bool Aligned(uint64_t v) { return v % kDirectAlignment == 0; }

// O_DIRECT needs aligned memory, lengths and offsets; the kernel answers
// EINVAL otherwise, but we refuse first with a message that says which.
bool CheckDirectAlignment(const std::vector<iovec>& iov, uint64_t offset, SysError& err, const char* call) {
  if (!Aligned(offset)) {
    err.refuse(EINVAL, "ERR_DIRECT_IO_ALIGNMENT", call,
               "O_DIRECT offset " + std::to_string(offset) + " is not a multiple of 4096");
    return false;
  }
  for (size_t i = 0; i < iov.size(); i++) {
    uintptr_t addr = reinterpret_cast<uintptr_t>(iov[i].iov_base);
    if (!Aligned(addr) || !Aligned(iov[i].iov_len)) {
      err.refuse(EINVAL, "ERR_DIRECT_IO_ALIGNMENT", call,
                 "O_DIRECT buffer " + std::to_string(i) + " (" + std::to_string(iov[i].iov_len) +
                     " bytes) must start on and span a multiple of 4096 bytes; use alignedBuffer()");
      return false;
    }
  }
  return true;
}

// Writes every byte of iov at offset, resuming after short writes and
// splitting at IOV_MAX, and, when maxIo > 0, into calls of at most maxIo
// bytes each. Returns false with err set on failure.
bool WriteAll(int fd, std::vector<iovec> iov, uint64_t offset, uint64_t maxIo, uint64_t& written, SysError& err) {
  size_t first = 0;
  written = 0;
  std::vector<iovec> piece;
  while (first < iov.size()) {
    const iovec* call = &iov[first];
    int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    if (maxIo > 0) {
      // The next maxIo bytes of iov: a prefix of it, the last buffer cut short.
      piece.clear();
      uint64_t room = maxIo;
      for (size_t i = first; i < iov.size() && room > 0 && piece.size() < IOV_MAX; i++) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(iov[i].iov_len, room));
        piece.push_back({iov[i].iov_base, len});
        room -= len;
      }
      call = piece.data();
      count = static_cast<int>(piece.size());
    }
    ssize_t n = pwritev(fd, call, count, static_cast<off_t>(offset + written));
    if (n < 0) {
      if (errno == EINTR) continue;
      err.set(errno, "pwritev");
      return false;
    }
    if (n == 0) {
      err.set(EIO, "pwritev", std::string(), "wrote 0 bytes");
      return false;
    }
    written += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      first++;
    }
    if (left > 0) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return true;
}

bool DeviceSize(int fd, uint64_t& size, bool& isBlock, SysError& err) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    err.set(errno, "fstat");
    return false;
  }
  isBlock = S_ISBLK(st.st_mode);
  if (!isBlock) {
    size = static_cast<uint64_t>(st.st_size);
    return true;
  }
  if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
    err.set(errno, "ioctl(BLKGETSIZE64)");
    return false;
  }
  return true;
}

// open(path, { create, direct, readOnly, mode, size }) -> { fd, direct, size, blockDevice }
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "path must be a string");
  std::string path = info[0].As<Napi::String>();
  bool create = false, direct = false, readOnly = false, sizeGiven = false;
  uint32_t mode = 0600;
  uint64_t size = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsObject()) ThrowType(env, "options must be an object");
    Napi::Object o = info[1].As<Napi::Object>();
    create = o.Get("create").ToBoolean();
    direct = o.Get("direct").ToBoolean();
    readOnly = o.Get("readOnly").ToBoolean();
    if (o.Has("mode") && !o.Get("mode").IsUndefined()) mode = o.Get("mode").ToNumber().Uint32Value() & 07777;
    Napi::Value s = o.Get("size");
    if (!s.IsUndefined() && !s.IsNull()) {
      if (!s.IsNumber()) ThrowType(env, "size must be a number");
      double d = s.As<Napi::Number>().DoubleValue();
      if (!(d >= 0) || d > kMaxSafeInteger || d != static_cast<double>(static_cast<uint64_t>(d))) {
        ThrowRange(env, "size must be a non-negative safe integer");
      }
      size = static_cast<uint64_t>(d);
      sizeGiven = true;
    }
  }
  if (readOnly && create) ThrowType(env, "create and readOnly exclude each other");

  struct Result {
    int fd = -1;
    bool direct = false;
    bool blockDevice = false;
    uint64_t size = 0;
  };
  auto r = std::make_shared<Result>();
  auto call = new IoCall(
      env, "mtagent.open",
      [=](SysError& err) {
        int flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (create ? O_CREAT : 0);
        int fd = -1;
        if (direct) {
          fd = open(path.c_str(), flags | O_DIRECT, mode);
          // tmpfs and some FUSE filesystems refuse O_DIRECT with EINVAL: fall back, and say so.
          if (fd >= 0) r->direct = true;
          else if (errno != EINVAL) {
            err.set(errno, "open", path);
            return;
          }
        }
        if (fd < 0) fd = open(path.c_str(), flags, mode);
        if (fd < 0) {
          err.set(errno, "open", path);
          return;
        }
        r->fd = fd;
        if (!DeviceSize(fd, r->size, r->blockDevice, err)) {
          err.path = path;
          close(fd);
          return;
        }
        if (sizeGiven && !r->blockDevice && r->size == 0 && size > 0) {
          if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
            err.set(errno, "ftruncate", path);
            close(fd);
            return;
          }
          r->size = size;
        }
      },
      [r](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("fd", Napi::Number::New(env, r->fd));
        o.Set("direct", Napi::Boolean::New(env, r->direct));
        o.Set("blockDevice", Napi::Boolean::New(env, r->blockDevice));
        o.Set("size", Napi::Number::New(env, static_cast<double>(r->size)));
        return o;
      });
  return call->Start();
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  auto call = new IoCall(
      env, "mtagent.close",
      [fd](SysError& err) {
        // Linux closes the descriptor even when close() reports EINTR: never retry.
        if (close(fd) != 0 && errno != EINTR) err.set(errno, "close");
      },
      [](Napi::Env env) { return env.Undefined(); });
  return call->Start();
}

// Optional argument i: the most one system call may move (0 or absent: no limit).
uint64_t ArgMaxIo(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return 0;
  uint64_t v = ArgU64(info, i, "maxIoBytes");
  if (v % kDirectAlignment != 0) ThrowRange(info.Env(), "maxIoBytes must be a multiple of 4096");
  return v;
}

// pwritev(fd, buffers, offset, maxIoBytes?, datasync?) -> bytes written (always
// the sum of the buffers). With datasync, fdatasync follows on the same pool
// thread: the data is durable when the promise resolves, and no trip back to
// the JS thread comes between the write and the flush.
Napi::Value Pwritev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (!info[1].IsArray()) ThrowType(env, "buffers must be an array of Buffers");
  Napi::Array arr = info[1].As<Napi::Array>();
  uint64_t offset = ArgU64(info, 2, "offset");
  uint64_t maxIo = ArgMaxIo(info, 3);
  bool datasync = info.Length() > 4 && info[4].ToBoolean();
  auto iov = std::make_shared<std::vector<iovec>>();
  iov->reserve(arr.Length());
  auto written = std::make_shared<uint64_t>(0);
  std::vector<Napi::Value> keep;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Buffer<uint8_t> b = ArgBuffer(env, arr.Get(i), "buffers[" + std::to_string(i) + "]");
    if (b.Length() == 0) continue;
    iov->push_back({b.Data(), b.Length()});
    keep.push_back(b);
  }
  auto call = new IoCall(
      env, "mtagent.pwritev",
      [fd, iov, offset, maxIo, datasync, written](SysError& err) {
        if (!iov->empty()) {
          bool direct = IsDirect(fd, err, "pwritev");
          if (err.failed()) return;
          if (direct && !CheckDirectAlignment(*iov, offset, err, "pwritev")) return;
          if (!WriteAll(fd, *iov, offset, maxIo, *written, err)) return;
        }
        if (datasync && fdatasync(fd) != 0) err.set(errno, "fdatasync");
      },
      [written](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*written)); });
  for (auto& v : keep) call->Retain(v);
  return call->Start();
}

// pread(fd, buffer, offset, maxIoBytes?) -> bytes read; fewer than buffer.length only at end of file
Napi::Value Pread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Buffer<uint8_t> buf = ArgBuffer(env, info[1], "buffer");
  uint64_t offset = ArgU64(info, 2, "offset");
  uint64_t maxIo = ArgMaxIo(info, 3);
  uint8_t* data = buf.Data();
  size_t len = buf.Length();
  auto got = std::make_shared<uint64_t>(0);
  auto call = new IoCall(
      env, "mtagent.pread",
      [fd, data, len, offset, maxIo, got](SysError& err) {
        bool direct = IsDirect(fd, err, "pread");
        if (err.failed()) return;
        if (direct) {
          std::vector<iovec> one{{data, len}};
          if (!CheckDirectAlignment(one, offset, err, "pread")) return;
        }
        while (*got < len) {
          size_t want = len - *got;
          if (maxIo > 0 && want > maxIo) want = static_cast<size_t>(maxIo);
          ssize_t n = pread(fd, data + *got, want, static_cast<off_t>(offset + *got));
          if (n < 0) {
            if (errno == EINTR) continue;
            err.set(errno, "pread");
            return;
          }
          if (n == 0) break;
          *got += static_cast<uint64_t>(n);
        }
      },
      [got](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*got)); });
  call->Retain(buf);
  return call->Start();
}

Napi::Value Fdatasync(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  auto call = new IoCall(
      info.Env(), "mtagent.fdatasync",
      [fd](SysError& err) {
        if (fdatasync(fd) != 0) err.set(errno, "fdatasync");
      },
      [](Napi::Env env) { return env.Undefined(); });
  return call->Start();
}

Napi::Value Fsync(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  auto call = new IoCall(
      info.Env(), "mtagent.fsync",
      [fd](SysError& err) {
        if (fsync(fd) != 0) err.set(errno, "fsync");
      },
      [](Napi::Env env) { return env.Undefined(); });
  return call->Start();
}

Napi::Value FallocateWithMode(const Napi::CallbackInfo& info, int mode, const char* name) {
  int fd = ArgFd(info, 0);
  uint64_t offset = ArgU64(info, 1, "offset");
  uint64_t length = ArgU64(info, 2, "length");
  if (length == 0) ThrowRange(info.Env(), "length must be greater than 0");
  auto call = new IoCall(
      info.Env(), name,
      [fd, mode, offset, length](SysError& err) {
        int rc;
        do {
          rc = fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length));
        } while (rc != 0 && errno == EINTR);
        if (rc != 0) err.set(errno, "fallocate");
      },
      [](Napi::Env env) { return env.Undefined(); });
  return call->Start();
}

Napi::Value Fallocate(const Napi::CallbackInfo& info) { return FallocateWithMode(info, 0, "mtagent.fallocate"); }

Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  return FallocateWithMode(info, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "mtagent.punchHole");
}

Napi::Value BlockDeviceSize(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  auto size = std::make_shared<uint64_t>(0);
  auto call = new IoCall(
      info.Env(), "mtagent.blockDeviceSize",
      [fd, size](SysError& err) {
        bool isBlock = false;
        if (!DeviceSize(fd, *size, isBlock, err)) return;
        if (!isBlock) err.set(ENOTBLK, "ioctl(BLKGETSIZE64)", std::string(), "not a block device");
      },
      [size](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*size)); });
  return call->Start();
}

// seekData(fd, offset) / seekHole(fd, offset) -> the next data (or hole)
// offset at or after `offset`, or -1 when there is no more data. Lets a copy
// skip the holes of a sparse image instead of reading zeros.
Napi::Value SeekWithWhence(const Napi::CallbackInfo& info, int whence, const char* name) {
  int fd = ArgFd(info, 0);
  uint64_t offset = ArgU64(info, 1, "offset");
  auto result = std::make_shared<int64_t>(-1);
  auto call = new IoCall(
      info.Env(), name,
      [fd, offset, whence, result](SysError& err) {
        off_t r = lseek(fd, static_cast<off_t>(offset), whence);
        if (r < 0) {
          if (errno == ENXIO) return;  // past the last data
          err.set(errno, "lseek");
          return;
        }
        *result = static_cast<int64_t>(r);
      },
      [result](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*result)); });
  return call->Start();
}

Napi::Value SeekData(const Napi::CallbackInfo& info) { return SeekWithWhence(info, SEEK_DATA, "mtagent.seekData"); }
Napi::Value SeekHole(const Napi::CallbackInfo& info) { return SeekWithWhence(info, SEEK_HOLE, "mtagent.seekHole"); }

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("pwritev", Napi::Function::New(env, Pwritev, "pwritev"));
  exports.Set("pread", Napi::Function::New(env, Pread, "pread"));
  exports.Set("fdatasync", Napi::Function::New(env, Fdatasync, "fdatasync"));
  exports.Set("fsync", Napi::Function::New(env, Fsync, "fsync"));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole, "punchHole"));
  exports.Set("blockDeviceSize", Napi::Function::New(env, BlockDeviceSize, "blockDeviceSize"));
  exports.Set("seekData", Napi::Function::New(env, SeekData, "seekData"));
  exports.Set("seekHole", Napi::Function::New(env, SeekHole, "seekHole"));
  exports.Set("directAlignment", Napi::Number::New(env, static_cast<double>(kDirectAlignment)));
}

}  // namespace mtagent
