// A disk for power-loss tests, in the manner of dm-log-writes: one file,
// `disk`, served over FUSE from a backing file, that logs every write, every
// discard and every flush it is asked for, in order, with the time of
// CLOCK_MONOTONIC at which it was done. A loop device over `disk` gives a
// block device whose history can be replayed to any flush, and past it.
//
//   log-writes-fuse BACKING LOG SIZE MOUNTPOINT
//
// Runs in the foreground and single-threaded, so the log is one total order
// of what reached the device. Log records, little-endian:
//   u32 kind (1 write, 2 flush, 3 discard), u32 length, u64 offset, u64 ns
// followed, for a write, by `length` bytes of data (a discard has none: its
// range reads as zeros from then on). A flush is logged once
// done: every write before it in the log had reached the backing file.
#define FUSE_USE_VERSION 35
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { KIND_WRITE = 1, KIND_FLUSH = 2, KIND_DISCARD = 3 };

struct __attribute__((packed)) log_header {
  uint32_t kind;
  uint32_t length;
  uint64_t offset;
  uint64_t ns;
};

static int backing_fd = -1;
static int log_fd = -1;
static off_t disk_bytes = 0;
static const char *disk_path = "/disk";

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int write_all(int fd, const struct iovec *iov, int count) {
  struct iovec local[2];
  memcpy(local, iov, sizeof(struct iovec) * (size_t)count);
  int i = 0;
  while (i < count) {
    ssize_t n = writev(fd, local + i, count - i);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    while (i < count && (size_t)n >= local[i].iov_len) {
      n -= (ssize_t)local[i].iov_len;
      i++;
    }
    if (i < count) {
      local[i].iov_base = (char *)local[i].iov_base + n;
      local[i].iov_len -= (size_t)n;
    }
  }
  return 0;
}

static int log_record(uint32_t kind, uint64_t offset, const void *data, uint32_t length) {
  struct log_header h = {kind, length, offset, now_ns()};
  struct iovec iov[2] = {{&h, sizeof h}, {(void *)data, data ? length : 0}};
  int rc = write_all(log_fd, iov, data ? 2 : 1);
  if (rc < 0) {
    fprintf(stderr, "log-writes-fuse: cannot write the log: %s\n", strerror(-rc));
    exit(3);
  }
  return 0;
}

static void *lw_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  (void)cfg;
  conn->max_write = 1024 * 1024;
  cfg->direct_io = 1;
  return NULL;
}

static int lw_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  (void)fi;
  memset(st, 0, sizeof *st);
  if (strcmp(path, "/") == 0) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    return 0;
  }
  if (strcmp(path, disk_path) == 0) {
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_size = disk_bytes;
    st->st_blocks = disk_bytes / 512;
    return 0;
  }
  return -ENOENT;
}

static int lw_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
  (void)offset;
  (void)fi;
  (void)flags;
  if (strcmp(path, "/") != 0) return -ENOENT;
  fill(buf, ".", NULL, 0, 0);
  fill(buf, "..", NULL, 0, 0);
  fill(buf, disk_path + 1, NULL, 0, 0);
  return 0;
}

static int lw_open(const char *path, struct fuse_file_info *fi) {
  if (strcmp(path, disk_path) != 0) return -ENOENT;
  fi->direct_io = 1;
  return 0;
}

static int lw_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  if (offset >= disk_bytes) return 0;
  if ((off_t)size > disk_bytes - offset) size = (size_t)(disk_bytes - offset);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(backing_fd, buf + done, size - done, offset + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) {
      memset(buf + done, 0, size - done);
      break;
    }
    done += (size_t)n;
  }
  return (int)size;
}

static int lw_write(const char *path, const char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  if (offset + (off_t)size > disk_bytes) return -ENOSPC;
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(backing_fd, buf + done, size - done, offset + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += (size_t)n;
  }
  log_record(KIND_WRITE, (uint64_t)offset, buf, (uint32_t)size);
  return (int)size;
}

static int lw_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  (void)datasync;
  (void)fi;
  log_record(KIND_FLUSH, 0, NULL, 0);
  return 0;
}

static int lw_fallocate(const char *path, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  // Discard and write-zeroes from the loop device: the range reads as zeros from here on.
  if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) return -EOPNOTSUPP;
  if (offset + length > disk_bytes) return -EINVAL;
  if (fallocate(backing_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) < 0) return -errno;
  // A discard carries no data: its length is the header's, in pieces below 4 GiB.
  for (off_t at = offset; at < offset + length;) {
    off_t piece = offset + length - at;
    if (piece > (off_t)1 << 30) piece = (off_t)1 << 30;
    log_record(KIND_DISCARD, (uint64_t)at, NULL, (uint32_t)piece);
    at += piece;
  }
  return 0;
}

static int lw_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  return size == disk_bytes ? 0 : -EPERM;
}

static int lw_flush(const char *path, struct fuse_file_info *fi) {
  // close(2) of a descriptor, not a durability barrier: nothing to log.
  (void)path;
  (void)fi;
  return 0;
}

static const struct fuse_operations ops = {
    .init = lw_init,
    .getattr = lw_getattr,
    .readdir = lw_readdir,
    .open = lw_open,
    .read = lw_read,
    .write = lw_write,
    .fsync = lw_fsync,
    .fallocate = lw_fallocate,
    .truncate = lw_truncate,
    .flush = lw_flush,
};

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: log-writes-fuse BACKING LOG SIZE MOUNTPOINT\n");
    return 2;
  }
  disk_bytes = (off_t)strtoll(argv[3], NULL, 10);
  if (disk_bytes <= 0 || disk_bytes % 4096 != 0) {
    fprintf(stderr, "log-writes-fuse: SIZE must be a positive multiple of 4096\n");
    return 2;
  }
  backing_fd = open(argv[1], O_RDWR | O_CREAT, 0600);
  if (backing_fd < 0 || ftruncate(backing_fd, disk_bytes) < 0) {
    fprintf(stderr, "log-writes-fuse: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  log_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
  if (log_fd < 0) {
    fprintf(stderr, "log-writes-fuse: %s: %s\n", argv[2], strerror(errno));
    return 1;
  }
  char *fuse_argv[] = {argv[0], "-f", "-s", "-o", "allow_other,default_permissions", argv[4], NULL};
  return fuse_main(6, fuse_argv, &ops, NULL);
}
