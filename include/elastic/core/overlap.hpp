// The overlap contract, checked: nothing a call writes shares a byte with
// anything else the call reads or writes.
//
// A call lists the byte regions of its arguments under the names its
// signature gives them: what it writes (outputs, residuals, the KV cache, the
// part of the workspace it uses) and what it reads (activations, weights,
// index arrays). check_disjoint throws elastic::Error naming the call and
// both arguments when a written region meets another region, before anything
// is written. An output marked in place of one named input may coincide
// exactly with that input (the MLP and attention layers may write y over x),
// and with nothing else; a partial overlap is still an error. Host and device
// pointers are compared alike.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <span>
#include <string_view>

#include "elastic/core/error.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"

namespace elastic::detail {

struct Region {
  std::string_view name;
  const std::byte* first = nullptr;  // [first, last); empty when first == last
  const std::byte* last = nullptr;
  std::string_view in_place_of = {};  // the read region it may coincide with exactly

  bool empty() const { return first == last; }
  Region allow_in_place_of(std::string_view input) const {
    Region copy = *this;
    copy.in_place_of = input;
    return copy;
  }
};

template <class T>
Region region(std::string_view name, const MatrixView<T>& view) {
  const auto [first, last] = byte_extent(view);
  return {name, first, last};
}

// count elements of T from data (index arrays, flags, ratios).
template <class T>
Region region(std::string_view name, const T* data, index_t count) {
  if (data == nullptr || count <= 0) return {name};
  const auto* first = reinterpret_cast<const std::byte*>(data);
  return {name, first, first + static_cast<std::size_t>(count) * sizeof(T)};
}

// The first `used` bytes of a workspace: the part a call carves.
inline Region region(std::string_view name, const Workspace& workspace, std::size_t used) {
  if (workspace.data == nullptr || used == 0) return {name};
  const auto* first = static_cast<const std::byte*>(workspace.data);
  return {name, first, first + used};
}

// Keys and values of a KV cache (one block, as KVCacheView carves it).
template <ElementType T>
Region region(std::string_view name, const KVCacheView<T>& cache) {
  if (cache.empty()) return {name};
  const std::size_t elements = cache.shape().elements_per_tensor();
  const auto* keys = reinterpret_cast<const std::byte*>(cache.keys());
  const auto* values_end = reinterpret_cast<const std::byte*>(cache.values() + elements);
  return {name, keys < values_end ? keys : values_end, keys < values_end ? values_end : keys};
}

inline bool regions_meet(const Region& a, const Region& b) {
  if (a.empty() || b.empty()) return false;
  return a.first < b.last && b.first < a.last;
}

// Every written region against every other written region and every read one.
inline void check_disjoint(std::string_view op, std::span<const Region> written, std::span<const Region> read) {
  for (auto w = written.begin(); w != written.end(); ++w) {
    for (auto other = w + 1; other != written.end(); ++other)
      require(!regions_meet(*w, *other), op, ": the ", w->name, " overlaps the ", other->name);
    for (const Region& r : read) {
      const bool may_alias = !w->in_place_of.empty() && w->in_place_of == r.name;
      const bool exact = w->first == r.first && w->last == r.last;
      require(!regions_meet(*w, r) || (may_alias && exact), op, ": the ", w->name, " overlaps the ", r.name,
              may_alias ? " (only an exact in-place alias is allowed)" : "");
    }
  }
}

inline void check_disjoint(std::string_view op, std::initializer_list<Region> written,
                           std::initializer_list<Region> read) {
  check_disjoint(op, std::span<const Region>(written.begin(), written.size()),
                 std::span<const Region>(read.begin(), read.size()));
}

}  // namespace elastic::detail
