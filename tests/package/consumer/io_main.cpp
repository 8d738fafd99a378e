// The consumer's model-file program (built when the route provides
// elastic::io): writes a small safetensors file and reads it back through
// the mapped reader, checking name, type, shape and bytes.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "elastic/io/safetensors.hpp"
#include "elastic/io/safetensors_writer.hpp"

int main() {
  const std::vector<float> values = {0.5f, -1.25f, 2.0f, 3.5f, -0.75f, 1.0f, 4.25f, -2.5f};
  const auto path = std::filesystem::temp_directory_path() / "elastic_consumer_io.safetensors";
  const elastic::io::TensorToWrite tensor{"weight", elastic::io::TensorType::f32, {2, 4},
                                          std::as_bytes(std::span(values))};
  elastic::io::write_safetensors(path, std::span(&tensor, 1));
  bool same = false;
  {
    const elastic::io::SafetensorsFile file(path.string());
    const elastic::io::StoredTensor& read = file.tensor("weight");
    same = read.type == elastic::io::TensorType::f32 && read.shape == std::vector<std::int64_t>{2, 4} &&
           read.bytes.size() == sizeof(float) * values.size() &&
           std::memcmp(read.bytes.data(), values.data(), read.bytes.size()) == 0;
  }
  std::filesystem::remove(path);
  std::printf("elastic::io consumer: safetensors round trip %s\n", same ? "ok" : "FAILED");
  return same ? 0 : 1;
}
