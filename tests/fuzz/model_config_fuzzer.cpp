// A libFuzzer harness for the config.json reader. Each input is the text of
// a config. The property: parse_model_config either throws FileError or
// returns a description that passes its own validation and whose sizes can
// be computed without overflow. Any other exception escapes and libFuzzer
// reports it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "elastic/io/model_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const elastic::io::ModelDescription model = elastic::io::parse_model_config(text, "fuzz/config.json");
    model.validate("fuzz/config.json");
    if (model.kv_bytes_per_token(4) < 0) std::abort();
  } catch (const elastic::io::FileError&) {
    // A rejected input: the documented outcome.
  }
  return 0;
}
