// Helpers for the misuse suites: a rejected call must throw the expected
// elastic::Error type, with a message that names the public call and the
// argument at fault, and must leave every buffer it could write (outputs,
// residuals, KV caches, weights, plans) bit-identical to what it held.
//
//   check_rejected<WorkspaceError>([&] { mlp.forward(...); },
//                                  {"ElasticMLP::forward", "workspace"},
//                                  {bytes_of(y), bytes_of(weights.gate)});
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "elastic/elastic.hpp"
#include "support/test_support.hpp"

namespace elastic::test {

using Bytes = std::span<const std::byte>;

template <class T>
Bytes bytes_of(const HostMatrix<T>& matrix) {
  return std::as_bytes(std::span(matrix.values.data(), matrix.values.size()));
}

template <class T, class A>
Bytes bytes_of(const std::vector<T, A>& values) {
  return std::as_bytes(std::span(values.data(), values.size()));
}

inline Bytes bytes_of(const host::WorkspaceBuffer& buffer) {
  return {static_cast<const std::byte*>(buffer.get().data), buffer.bytes()};
}

// Runs `call`, which must throw E (or a subclass of it) whose message contains
// every string in `mentions`, and checks that each buffer in `untouched`
// holds the same bytes after the call as before it.
template <class E = Error, class Call>
void check_rejected(Call&& call, std::initializer_list<std::string_view> mentions,
                    std::initializer_list<Bytes> untouched) {
  std::vector<std::vector<std::byte>> before;
  before.reserve(untouched.size());
  for (Bytes buffer : untouched) before.emplace_back(buffer.begin(), buffer.end());

  std::string message;
  bool threw_expected = false;
  try {
    call();
  } catch (const E& error) {
    threw_expected = true;
    message = error.what();
  } catch (const std::exception& other) {
    FAIL_CHECK("expected ", std::string(typeid(E).name()), ", caught ", std::string(typeid(other).name()), ": ",
               std::string(other.what()));
    return;
  }
  if (!threw_expected) {
    FAIL_CHECK("expected ", std::string(typeid(E).name()), ", but the call returned");
    return;
  }
  INFO("message: ", message);
  for (std::string_view mention : mentions) CHECK(message.find(mention) != std::string::npos);
  std::size_t index = 0;
  for (Bytes buffer : untouched) {
    INFO("buffer ", index, " of ", untouched.size());
    CHECK(std::equal(buffer.begin(), buffer.end(), before[index].begin(), before[index].end()));
    ++index;
  }
}

}  // namespace elastic::test
