// Calls about the host rather than a file's bytes: filesystem facts for the
// retention-volume rules, aligned memory for O_DIRECT, and systemd's notify socket.
#include "system.h"

#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <memory>
#include <string>

#include "errors.h"
#include "io_call.h"

namespace mtagent {
namespace {

struct FsType {
  uint64_t magic;
  const char* name;
};

// Magic numbers from linux/magic.h (and the filesystems' own headers).
constexpr FsType kFsTypes[] = {
    {0xEF53, "ext4"},          {0x58465342, "xfs"},       {0x9123683E, "btrfs"},   {0x01021994, "tmpfs"},
    {0x858458F6, "ramfs"},     {0x4D44, "vfat"},          {0x2011BAB0, "exfat"},   {0x5346544E, "ntfs"},
    {0x6969, "nfs"},           {0xFF534D42, "cifs"},      {0xFE534D42, "smb2"},    {0x794C7630, "overlay"},
    {0x2FC12FC1, "zfs"},       {0xF2F52010, "f2fs"},      {0x65735546, "fuse"},    {0x9660, "iso9660"},
    {0x73717368, "squashfs"},  {0x9FA0, "proc"},          {0x62656572, "sysfs"},   {0x27E0EB, "cgroup"},
    {0x63677270, "cgroup2"},   {0x3434, "nilfs"},         {0x24051905, "ubifs"},   {0xCA451A4E, "bcachefs"},
};

const char* FsName(uint64_t magic) {
  for (const FsType& t : kFsTypes) {
    if (t.magic == magic) return t.name;
  }
  return "unknown";
}

// statfs(path) -> { type, magic, blockSize, capacityBytes, freeBytes, availableBytes, readOnly }
Napi::Value Statfs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "path must be a string");
  std::string path = info[0].As<Napi::String>();
  auto st = std::make_shared<struct statfs>();
  auto call = new IoCall(
      env, "mtagent.statfs",
      [path, st](SysError& err) {
        if (statfs(path.c_str(), st.get()) != 0) err.set(errno, "statfs", path);
      },
      [st](Napi::Env env) {
        uint64_t magic = static_cast<uint64_t>(static_cast<uint32_t>(st->f_type));
        uint64_t bsize = static_cast<uint64_t>(st->f_frsize ? st->f_frsize : st->f_bsize);
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", Napi::String::New(env, FsName(magic)));
        o.Set("magic", Napi::Number::New(env, static_cast<double>(magic)));
        o.Set("blockSize", Napi::Number::New(env, static_cast<double>(bsize)));
        o.Set("capacityBytes", Napi::Number::New(env, static_cast<double>(bsize * st->f_blocks)));
        o.Set("freeBytes", Napi::Number::New(env, static_cast<double>(bsize * st->f_bfree)));
        o.Set("availableBytes", Napi::Number::New(env, static_cast<double>(bsize * st->f_bavail)));
        o.Set("readOnly", Napi::Boolean::New(env, (st->f_flags & ST_RDONLY) != 0));
        return o;
      });
  return call->Start();
}

// alignedBuffer(size, zero = true) -> Buffer whose memory starts on a 4096-byte
// boundary; zero-filled unless the caller is about to overwrite all of it.
// V8 counts the memory of every ArrayBuffer it holds, so it is not reported
// again here: doing so made the collector run twice as often.
Napi::Value AlignedBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowType(env, "size must be a number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d > 0) || d > 4294967296.0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowRange(env, "size must be an integer from 1 to 4294967296");
  }
  size_t size = static_cast<size_t>(d);
  void* mem = nullptr;
  int rc = posix_memalign(&mem, kDirectAlignment, size);
  if (rc != 0) {
    SysError e;
    e.set(rc, "posix_memalign");
    throw MakeSysError(env, e);
  }
  bool zero = info.Length() < 2 || !info[1].IsBoolean() || info[1].As<Napi::Boolean>().Value();
  if (zero) std::memset(mem, 0, size);
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(mem), size, [](Napi::Env, uint8_t* data) { std::free(data); });
}

// discardPages(buffer) -> bytes given back. The whole pages inside the
// buffer go back to the system (MADV_DONTNEED): the memory stays mapped and
// reads as zeros, and a page costs RSS again only once it is written.
Napi::Value DiscardPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) ThrowType(env, "buffer must be a Buffer");
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(buf.Data()) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(buf.Data()) + buf.Length()) / page * page;
  if (end <= begin) return Napi::Number::New(env, 0);
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED) != 0) {
    SysError e;
    e.set(errno, "madvise");
    throw MakeSysError(env, e);
  }
  return Napi::Number::New(env, static_cast<double>(end - begin));
}

// releaseBuffer(buffer) -> bytes freed. When the buffer is the whole of its
// ArrayBuffer, detaches that ArrayBuffer: its memory is freed now rather than
// when V8 next collects it, and every view of it reads as empty from then on.
// A view into a larger ArrayBuffer (other bytes may still be in use) or one
// that cannot be detached is left alone, and 0 returned.
Napi::Value ReleaseBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) ThrowType(env, "buffer must be a Buffer");
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  Napi::ArrayBuffer whole = buf.ArrayBuffer();
  const size_t bytes = whole.ByteLength();
  // A detached ArrayBuffer has no bytes: `bytes == 0` covers it.
  if (buf.ByteOffset() != 0 || buf.ByteLength() != bytes || bytes == 0) return Napi::Number::New(env, 0);
  if (napi_detach_arraybuffer(env, whole) != napi_ok) return Napi::Number::New(env, 0);
  return Napi::Number::New(env, static_cast<double>(bytes));
}

// returnFreedMemory(thresholdBytes) -> true if set. Fixes glibc's mmap
// threshold: blocks this big or bigger are mapped on their own and unmapped
// when freed. By default glibc raises the threshold each time such a block
// is freed, so a daemon that churns through megabyte buffers keeps them all
// in its heap and its RSS never comes down.
Napi::Value ReturnFreedMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowType(env, "thresholdBytes must be a number");
  int threshold = info[0].As<Napi::Number>().Int32Value();
  if (threshold < 4096) ThrowRange(env, "thresholdBytes must be at least 4096");
  bool ok = mallopt(M_MMAP_THRESHOLD, threshold) == 1 && mallopt(M_TRIM_THRESHOLD, 2 * threshold) == 1;
  return Napi::Boolean::New(env, ok);
}

// sdNotify(state) -> true if sent, false when not run by systemd ($NOTIFY_SOCKET unset)
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "state must be a string");
  std::string state = info[0].As<Napi::String>();
  const char* socketPath = std::getenv("NOTIFY_SOCKET");
  if (socketPath == nullptr || socketPath[0] == '\0') return Napi::Boolean::New(env, false);
  std::string path = socketPath;
  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path[0] != '/' && path[0] != '@') {
    SysError e;
    e.set(EAFNOSUPPORT, "connect", path, "NOTIFY_SOCKET must be a path or an @abstract name");
    throw MakeSysError(env, e);
  }
  if (path.size() >= sizeof(addr.sun_path)) {
    SysError e;
    e.set(ENAMETOOLONG, "connect", path);
    throw MakeSysError(env, e);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    SysError e;
    e.set(errno, "socket");
    throw MakeSysError(env, e);
  }
  ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr), len);
  int sendErrno = errno;
  close(fd);
  if (n < 0) {
    SysError e;
    e.set(sendErrno, "sendto", path);
    throw MakeSysError(env, e);
  }
  return Napi::Boolean::New(env, true);
}

// flock(fd) -> true when this descriptor now holds the exclusive lock, false
// when another holds it. Never waits. The kernel drops it when the holder dies.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  SysError e;
  e.set(errno, "flock");
  throw MakeSysError(env, e);
}

}  // namespace

void InitSystem(Napi::Env env, Napi::Object exports) {
  exports.Set("statfs", Napi::Function::New(env, Statfs, "statfs"));
  exports.Set("alignedBuffer", Napi::Function::New(env, AlignedBuffer, "alignedBuffer"));
  exports.Set("discardPages", Napi::Function::New(env, DiscardPages, "discardPages"));
  exports.Set("releaseBuffer", Napi::Function::New(env, ReleaseBuffer, "releaseBuffer"));
  exports.Set("returnFreedMemory", Napi::Function::New(env, ReturnFreedMemory, "returnFreedMemory"));
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
}

}  // namespace mtagent
