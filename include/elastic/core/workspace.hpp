// Caller-owned scratch memory with a size query first (CUB's two-phase
// pattern). A layer asks how many bytes a call needs, the caller provides a
// Workspace of at least that size (host or device memory, as the executor
// expects), and the call carves its buffers out of it without allocating.
// The size query and the carving run the same WorkspaceCursor code, once in
// measuring mode (no memory) and once for real, so the two cannot disagree.
// Sizes are checked: a request whose bytes do not fit in std::size_t throws a
// WorkspaceError, from the size query as from the call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "elastic/core/counts.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic {

// Every buffer carved from a workspace starts on this boundary.
inline constexpr std::size_t workspace_alignment = 256;

constexpr std::size_t align_up(std::size_t value, std::size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

struct Workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

class WorkspaceCursor {
 public:
  // Measuring mode: take() returns null and only counts bytes.
  WorkspaceCursor() = default;

  // Carving mode over caller memory; the base must be aligned.
  explicit WorkspaceCursor(Workspace workspace) : workspace_(workspace), measuring_(false) {
    require<WorkspaceError>(workspace.bytes == 0 || workspace.data != nullptr,
                            "workspace of ", workspace.bytes, " bytes has a null pointer");
    require<WorkspaceError>(reinterpret_cast<std::uintptr_t>(workspace.data) % workspace_alignment == 0,
                            "workspace must be aligned to ", workspace_alignment, " bytes");
  }

  // Reserves count elements of T; in carving mode throws when the workspace
  // is too small.
  template <class T>
  T* take(std::size_t count) {
    const std::size_t begin = used_;
    const std::size_t bytes = detail::checked_product(count, sizeof(T), "workspace size");
    require<WorkspaceError>(bytes <= std::numeric_limits<std::size_t>::max() - begin - (workspace_alignment - 1),
                            "workspace size overflows: ", begin, " bytes taken, ", bytes, " more requested");
    used_ = align_up(begin + bytes, workspace_alignment);
    if (measuring_) return nullptr;
    require<WorkspaceError>(used_ <= workspace_.bytes, "workspace too small: need at least ", used_,
                            " bytes, found ", workspace_.bytes);
    return reinterpret_cast<T*>(static_cast<std::byte*>(workspace_.data) + begin);
  }

  // A [rows x cols] matrix whose rows start on 16-byte boundaries (the row
  // stride is cols rounded up to whole 16-byte vectors); in measuring mode
  // its data pointer is null.
  template <class T>
  MatrixView<T> take_matrix(index_t rows, index_t cols) {
    require(rows >= 0 && cols >= 0, "workspace matrix extents must be non-negative, found [", rows, " x ", cols, "]");
    constexpr auto per_vector = static_cast<std::size_t>(16 / sizeof(T) > 0 ? 16 / sizeof(T) : 1);
    const std::size_t padded = detail::checked_product(
        (static_cast<std::size_t>(cols) + per_vector - 1) / per_vector, per_vector, "workspace matrix row");
    const std::size_t count =
        detail::checked_product(static_cast<std::size_t>(rows), padded, "workspace matrix size");
    return MatrixView<T>(take<T>(count), rows, cols, static_cast<index_t>(padded));
  }

  // A nested workspace of `bytes` bytes (for a callee's own carving).
  Workspace take_workspace(std::size_t bytes) { return Workspace{take<std::byte>(bytes), bytes}; }

  std::size_t bytes_used() const { return used_; }

 private:
  Workspace workspace_{};
  std::size_t used_ = 0;
  bool measuring_ = true;
};

}  // namespace elastic
