// The one error type of the model-file readers. Every malformed input a
// reader meets (a truncated file, a lying length, an unknown type, a missing
// tensor, a key of the wrong type) throws FileError with a message that
// starts with the file's path and then says what was expected and what was
// found, so a tool can print e.what() as its one line on stderr.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "elastic/core/error.hpp"

namespace elastic::io {

class FileError : public Error {
 public:
  using Error::Error;
};

// Throws FileError "<path>: <parts...>" when the condition is false.
template <class... Parts>
void require_file(bool condition, std::string_view path, Parts&&... parts) {
  if (!condition) throw FileError(elastic::detail::concat(path, ": ", std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] void fail_file(std::string_view path, Parts&&... parts) {
  throw FileError(elastic::detail::concat(path, ": ", std::forward<Parts>(parts)...));
}

}  // namespace elastic::io
