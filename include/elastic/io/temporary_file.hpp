// Writing a file so that it is never seen half-written: the bytes go to a
// temporary file beside the destination (same folder, so the rename stays
// on one file system), which commit() flushes to disk and renames over the
// destination in one step. A TemporaryFile destroyed before commit() removes
// its temporary, so a failure at any point leaves neither a partial file
// nor a stray temporary. Every failure is a FileError naming the destination.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "elastic/io/file_error.hpp"

namespace elastic::io {

// A temporary file next to the destination, removed unless committed.
class TemporaryFile {
 public:
  explicit TemporaryFile(const std::filesystem::path& destination)
      : path_(destination.string() + ".tmp-XXXXXX"), destination_(destination.string()) {
    fd_ = ::mkstemp(path_.data());
    require_file(fd_ >= 0, destination_, "cannot create a temporary file: ", std::strerror(errno));
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  void write(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
      const ssize_t written = ::write(fd_, bytes.data(), bytes.size());
      if (written < 0 && errno == EINTR) continue;
      require_file(written > 0, destination_, "cannot write: ", std::strerror(errno));
      bytes = bytes.subspan(static_cast<std::size_t>(written));
    }
  }

  // Flushes, closes and renames the file to the destination.
  void commit() {
    require_file(::fchmod(fd_, 0644) == 0 && ::fsync(fd_) == 0, destination_, "cannot flush: ", std::strerror(errno));
    const int fd = std::exchange(fd_, -1);
    require_file(::close(fd) == 0, destination_, "cannot close: ", std::strerror(errno));
    std::error_code error;
    std::filesystem::rename(path_, destination_, error);
    require_file(!error, destination_, "cannot rename the temporary file into place: ", error.message());
    committed_ = true;
  }

 private:
  std::string path_;
  std::string destination_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace elastic::io
