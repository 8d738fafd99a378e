// Progress of long work on stderr: a bar redrawn in place when stderr is a
// terminal, plain lines (at most one per tenth of the work) otherwise, so
// logs stay readable.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

namespace elastic::cli {

class Progress {
 public:
  Progress(std::string what, long total) : what_(std::move(what)), total_(total), tty_(::isatty(STDERR_FILENO) == 1) {}

  void update(long done, const std::string& detail) {
    if (tty_) {
      const int width = 30;
      const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
      std::fprintf(stderr, "\r%s [%s%s] %ld/%ld %s", what_.c_str(), std::string(std::size_t(filled), '#').c_str(),
                   std::string(std::size_t(width - filled), ' ').c_str(), done, total_, detail.c_str());
      if (done == total_) std::fputc('\n', stderr);
    } else if (done == total_ || done * 10 / total_ != last_tenth_) {
      std::fprintf(stderr, "%s %ld/%ld %s\n", what_.c_str(), done, total_, detail.c_str());
      last_tenth_ = done * 10 / total_;
    }
    std::fflush(stderr);
  }

 private:
  std::string what_;
  long total_;
  bool tty_;
  long last_tenth_ = 0;
};

}  // namespace elastic::cli
