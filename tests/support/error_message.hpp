// The message of the error a call throws, for tests that check what a
// message says: error_of<E>(call) runs the call and returns e.what() of the
// E it throws, or "(no error)" when it returns (which no expected text
// contains, so the check fails). Other exceptions propagate to doctest.
#pragma once

#include <string>

#include "elastic/core/error.hpp"

namespace elastic::test {

template <class E = Error, class Call>
std::string error_of(Call&& call) {
  try {
    call();
  } catch (const E& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace elastic::test
