// An owning, aligned host allocation to hand to the host executor as its
// workspace: allocate it once at setup from the layer's size query, reuse it
// for every forward.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

#include "elastic/core/workspace.hpp"

namespace elastic::host {

class WorkspaceBuffer {
 public:
  explicit WorkspaceBuffer(std::size_t bytes = 0)
      : bytes_(bytes),
        data_(bytes == 0 ? nullptr
                         : static_cast<std::byte*>(::operator new(bytes, std::align_val_t{workspace_alignment}))) {}

  Workspace get() const { return {data_.get(), bytes_}; }
  std::size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(std::byte* data) const { ::operator delete(data, std::align_val_t{workspace_alignment}); }
  };

  std::size_t bytes_;
  std::unique_ptr<std::byte, Free> data_;
};

}  // namespace elastic::host
