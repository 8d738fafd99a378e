// A whole file mapped read-only into memory (POSIX mmap), the storage every
// reader works from: tensors are views into the mapping, nothing is copied
// until a caller converts it. The mapping lives as long as the MappedFile;
// moving it keeps the bytes where they are.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
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

class MappedFile {
 public:
  MappedFile() = default;

  explicit MappedFile(std::string path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    require_file(fd >= 0, path_, "cannot open: ", std::strerror(errno));
    struct stat info {};
    const bool stat_ok = ::fstat(fd, &info) == 0;
    const int stat_error = errno;
    if (!stat_ok || !S_ISREG(info.st_mode)) {
      ::close(fd);
      require_file(stat_ok, path_, "cannot stat: ", std::strerror(stat_error));
      fail_file(path_, "expected a regular file, found a directory or a device");
    }
    size_ = static_cast<std::size_t>(info.st_size);
    if (size_ > 0) {
      void* data = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      const int error = errno;
      ::close(fd);
      require_file(data != MAP_FAILED, path_, "cannot map ", size_, " bytes: ", std::strerror(error));
      data_ = static_cast<const std::byte*>(data);
    } else {
      ::close(fd);
    }
  }

  MappedFile(MappedFile&& other) noexcept
      : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MappedFile& operator=(MappedFile&& other) noexcept {
    if (this != &other) {
      unmap();
      path_ = std::move(other.path_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { unmap(); }

  const std::string& path() const { return path_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }

 private:
  void unmap() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
  }

  std::string path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Whether `path` names a folder (false when it cannot be inspected: opening
// it as a file then reports the reason).
inline bool is_folder(const std::filesystem::path& path) {
  std::error_code ignored;
  return std::filesystem::is_directory(path, ignored);
}

}  // namespace elastic::io
