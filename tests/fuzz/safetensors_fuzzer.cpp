// A libFuzzer harness for the safetensors header parser. Each input is a
// whole file held in memory. The property: parse_safetensors_header either
// throws FileError or returns tensors whose byte views lie inside the input,
// hold exactly elements * element size bytes and do not overlap; every view
// is read in full, so AddressSanitizer proves it stays inside the buffer.
// Any other exception escapes and libFuzzer reports it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "elastic/io/safetensors.hpp"

namespace {

void require_property(bool holds) {
  if (!holds) std::abort();
}

// The sum of every byte of the tensor, read one by one.
unsigned touch(std::span<const std::byte> bytes) {
  unsigned sum = 0;
  for (std::byte b : bytes) sum += std::to_integer<unsigned>(b);
  return sum;
}

void check_tensors(const elastic::io::SafetensorsHeader& header, std::span<const std::byte> file) {
  std::vector<std::span<const std::byte>> views;
  for (const elastic::io::StoredTensor& tensor : header.tensors) {
    require_property(tensor.bytes.empty() ||
                     (tensor.bytes.data() >= file.data() && tensor.bytes.data() + tensor.bytes.size() <= file.data() + file.size()));
    require_property(static_cast<std::uint64_t>(tensor.elements()) * elastic::io::info(tensor.type).block_bytes ==
                     tensor.bytes.size());
    if (!tensor.bytes.empty()) views.push_back(tensor.bytes);
  }
  std::sort(views.begin(), views.end(), [](auto a, auto b) { return a.data() < b.data(); });
  for (std::size_t i = 1; i < views.size(); ++i)
    require_property(views[i - 1].data() + views[i - 1].size() <= views[i].data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const elastic::io::SafetensorsHeader header = elastic::io::parse_safetensors_header(file, "fuzz.safetensors");
    check_tensors(header, file);
    volatile unsigned sink = 0;
    for (const elastic::io::StoredTensor& tensor : header.tensors) sink = sink + touch(tensor.bytes);
  } catch (const elastic::io::FileError&) {
    // A rejected input: the documented outcome.
  }
  return 0;
}
