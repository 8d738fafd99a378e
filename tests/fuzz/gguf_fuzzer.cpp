// A libFuzzer harness for the GGUF reader. Each input is a whole file:
// parse_gguf() reads it, and on success describe_gguf_model() and
// gguf_tokenizer_spec() interpret it and every dequantisable tensor is
// decoded into a scratch buffer of exactly its size, so ASan checks that
// every tensor view lies inside the input.
//
// The property: each call returns or throws elastic::Error. Any other
// exception, a crash or a sanitizer report aborts, and libFuzzer keeps the
// input. Seeds (seeds/gguf_seeds.py) are small valid files.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <vector>

#include "elastic/io/dequantize.hpp"
#include "elastic/io/gguf.hpp"
#include "elastic/io/gguf_model.hpp"

namespace {

// Tensors larger than this are skipped, to keep each input fast.
constexpr std::int64_t max_decoded_elements = std::int64_t{1} << 20;

template <class Call>
void expect_returns_or_file_error(const char* what, Call call) {
  try {
    call();
  } catch (const elastic::Error&) {
  } catch (const std::exception& other) {
    std::fprintf(stderr, "%s threw a non-elastic exception: %s\n", what, other.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const elastic::io::GgufContents gguf = elastic::io::parse_gguf(bytes, "fuzz.gguf");
    expect_returns_or_file_error("describe_gguf_model", [&] { elastic::io::describe_gguf_model(gguf); });
    expect_returns_or_file_error("gguf_tokenizer_spec", [&] { elastic::io::gguf_tokenizer_spec(gguf); });
    std::vector<float> scratch;
    for (const elastic::io::StoredTensor& tensor : gguf.tensors()) {
      if (!elastic::io::dequantizable(tensor.type) || tensor.elements() > max_decoded_elements) continue;
      scratch.assign(static_cast<std::size_t>(tensor.elements()), 0.0f);
      elastic::io::dequantize_tensor<float>(tensor, scratch);
    }
  } catch (const elastic::Error&) {
  } catch (const std::exception& other) {
    std::fprintf(stderr, "parse_gguf threw a non-elastic exception: %s\n", other.what());
    std::abort();
  }
  return 0;
}
