// Workspaces: the measuring pass and the carving pass agree, buffers are
// aligned, and a workspace that is too small is reported with both sizes.
#include <doctest/doctest.h>

#include <cstdint>

#include "support/test_support.hpp"

using namespace elastic;

TEST_CASE("measuring and carving agree") {
  WorkspaceCursor measure;
  CHECK(measure.take<float>(10) == nullptr);
  CHECK(measure.take<half_t>(300) == nullptr);
  const std::size_t needed = measure.bytes_used();
  CHECK(needed == 256 + 768);

  host::WorkspaceBuffer storage(needed);
  WorkspaceCursor carve(storage.get());
  float* first = carve.take<float>(10);
  half_t* second = carve.take<half_t>(300);
  CHECK(reinterpret_cast<std::uintptr_t>(first) % workspace_alignment == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(second) % workspace_alignment == 0);
  CHECK(reinterpret_cast<std::byte*>(second) - reinterpret_cast<std::byte*>(first) == 256);
  CHECK(carve.bytes_used() == needed);
}

TEST_CASE("a workspace that is too small throws") {
  host::WorkspaceBuffer storage(512);
  WorkspaceCursor carve(storage.get());
  carve.take<float>(64);
  CHECK_THROWS_WITH_AS(carve.take<float>(65), "workspace too small: need at least 768 bytes, found 512",
                       WorkspaceError);
  CHECK_THROWS_AS(WorkspaceCursor(Workspace{nullptr, 64}), WorkspaceError);
  CHECK_THROWS_AS(WorkspaceCursor(Workspace{static_cast<std::byte*>(storage.get().data) + 8, 64}), WorkspaceError);
}
