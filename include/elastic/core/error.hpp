// The library's exceptions. Every check on arguments, shapes, widths, files
// and workspaces throws elastic::Error (or a subclass) before anything is
// written, with a message that says what was expected and what was found.
// The library never prints and never exits: callers decide how to report.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace elastic {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A width (MLP neurons, heads) that is not a member of the compile-time set.
class WidthError : public Error {
 public:
  using Error::Error;
};

// A workspace smaller than the size query asked for.
class WorkspaceError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream stream;
  (stream << ... << std::forward<Parts>(parts));
  return stream.str();
}

}  // namespace detail

// Throws E with the parts streamed together when the condition is false.
template <class E = Error, class... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) throw E(detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace elastic
