// Tests of the safetensors reader and writer. Files are written two ways,
// with write_safetensors and byte by byte here (an independent layout with
// an odd-sized header, so the data is unaligned), and read back tensor by
// tensor. Every validation rule has a corrupt copy of a good file that must
// give FileError with the path and the pieces that say what was wrong; the
// writer must reject bad tensors before writing and never leave a partial
// or temporary file behind.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "elastic/io/safetensors.hpp"
#include "elastic/io/safetensors_writer.hpp"
#include "support/python.hpp"

namespace {

using elastic::io::FileError;
using elastic::io::SafetensorsFile;
using elastic::io::SafetensorsModel;
using elastic::io::StoredTensor;
using elastic::io::TensorToWrite;
using elastic::io::TensorType;
using Bytes = std::vector<std::byte>;

Bytes random_bytes(std::size_t count, std::uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> byte(1, 255);  // never zero
  Bytes bytes(count);
  for (std::byte& b : bytes) b = static_cast<std::byte>(byte(generator));
  return bytes;
}

// 8-byte little-endian length, the header text as given, then the data.
Bytes hand_written_file(std::string_view header, const Bytes& data) {
  Bytes file;
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<std::byte>(std::uint64_t{header.size()} >> (8 * i)));
  for (char c : header) file.push_back(static_cast<std::byte>(c));
  file.insert(file.end(), data.begin(), data.end());
  return file;
}

void write_file(const std::filesystem::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

Bytes read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes bytes(text.size());
  std::transform(text.begin(), text.end(), bytes.begin(), [](char c) { return static_cast<std::byte>(c); });
  return bytes;
}

std::vector<std::string> folder_entries(const std::filesystem::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

void check_tensor(const StoredTensor* found, const TensorToWrite& expected) {
  REQUIRE_MESSAGE(found != nullptr, expected.name);
  CHECK(found->name == expected.name);
  CHECK(found->type == expected.type);
  CHECK(found->shape == expected.shape);
  CHECK(same_bytes(found->bytes, expected.data));
}

// Runs `action`, which must throw FileError; checks the message starts with
// `path` and contains every piece.
template <class Action>
void check_file_error(Action&& action, std::string_view path, std::initializer_list<std::string_view> pieces) {
  try {
    action();
    FAIL("expected FileError for ", path);
  } catch (const FileError& error) {
    const std::string message = error.what();
    CHECK_MESSAGE(message.starts_with(std::string(path) + ": "), message);
    for (std::string_view piece : pieces) CHECK_MESSAGE(message.find(piece) != std::string::npos, piece, " in ", message);
  }
}

// Four tensors of different types and ranks (a scalar and an empty one
// included), backed by random bytes.
struct SampleTensors {
  Bytes weight = random_bytes(2 * 3 * 4, 1);
  Bytes bias = random_bytes(5 * 2, 2);
  Bytes scale = random_bytes(1, 3);
  std::vector<TensorToWrite> tensors{
      {"model.layers.0.weight", TensorType::f32, {2, 3}, weight},
      {"model.layers.0.bias", TensorType::bf16, {5}, bias},
      {"scale", TensorType::i8, {}, scale},
      {"empty", TensorType::f16, {0, 7}, {}},
  };
};

}  // namespace

TEST_CASE("safetensors: the writer's files read back tensor by tensor") {
  elastic::test::TemporaryDirectory folder;
  const SampleTensors sample;
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "ünïcode"}};
  const auto path = folder / "model.safetensors";
  elastic::io::write_safetensors(path, sample.tensors, metadata);

  const Bytes bytes = read_file(path);
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = header_length << 8 | std::to_integer<std::uint64_t>(bytes[i]);
  CHECK(header_length % 8 == 0);
  CHECK(static_cast<char>(bytes[8]) == '{');
  CHECK(bytes.size() == 8 + header_length + 24 + 10 + 1);

  const SafetensorsFile file(path.string());
  CHECK(file.path() == path.string());
  CHECK(file.metadata() == metadata);
  REQUIRE(file.tensors().size() == sample.tensors.size());
  for (const TensorToWrite& tensor : sample.tensors) check_tensor(file.find(tensor.name), tensor);
  CHECK(file.tensor("scale").elements() == 1);
  CHECK(file.find("missing") == nullptr);
  check_file_error([&] { (void)file.tensor("missing.weight"); }, path.string(), {"\"missing.weight\"", "4 tensors"});

  // Data lies in the given order.
  CHECK(file.tensor("model.layers.0.weight").bytes.data() < file.tensor("model.layers.0.bias").bytes.data());
  CHECK(file.tensor("model.layers.0.bias").bytes.data() < file.tensor("scale").bytes.data());
}

TEST_CASE("safetensors: a hand-written file with unaligned data reads back") {
  // 69-byte header: the data starts at offset 77, so no tensor is aligned.
  const Bytes data = random_bytes(12 + 4, 4);
  const std::string header =
      R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[12,16]},)"
      R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  const Bytes bytes = hand_written_file(header, data);
  REQUIRE(header.size() % 4 != 0);

  elastic::test::TemporaryDirectory folder;
  const auto path = folder / "hand.safetensors";
  write_file(path, bytes);
  const SafetensorsFile file(path.string());
  REQUIRE(file.tensors().size() == 2);
  CHECK(file.tensors()[0].name == "a");  // ordered by data offset
  CHECK(file.metadata().empty());
  const Bytes a(data.begin(), data.begin() + 12), b(data.begin() + 12, data.end());
  check_tensor(file.find("a"), {"a", TensorType::f32, {3}, a});
  check_tensor(file.find("b"), {"b", TensorType::u8, {4}, b});
  CHECK(reinterpret_cast<std::uintptr_t>(file.tensor("a").bytes.data()) % 4 != 0);

  // The same bytes parse in memory, views into the buffer.
  const auto parsed = elastic::io::parse_safetensors_header(bytes, "memory");
  REQUIRE(parsed.tensors.size() == 2);
  CHECK(parsed.tensors[1].bytes.data() == bytes.data() + 8 + header.size() + 12);
}

TEST_CASE("safetensors: sharded and single-file models") {
  elastic::test::TemporaryDirectory folder;
  const SampleTensors sample;
  const std::vector<TensorToWrite> first(sample.tensors.begin(), sample.tensors.begin() + 2);
  const std::vector<TensorToWrite> second(sample.tensors.begin() + 2, sample.tensors.end());
  elastic::io::write_safetensors(folder / "model-00001-of-00002.safetensors", first);
  elastic::io::write_safetensors(folder / "model-00002-of-00002.safetensors", second);
  std::string index = R"({"metadata":{"total_size":35},"weight_map":{)";
  for (const TensorToWrite& tensor : sample.tensors)
    index += "\"" + tensor.name + "\":\"model-0000" + (&tensor - sample.tensors.data() < 2 ? "1" : "2") +
             "-of-00002.safetensors\",";
  index.back() = '}';
  index += "}";
  write_file(folder / "model.safetensors.index.json", Bytes(reinterpret_cast<const std::byte*>(index.data()),
                                                           reinterpret_cast<const std::byte*>(index.data() + index.size())));

  for (const auto& opened : {folder.path(), folder / "model.safetensors.index.json"}) {
    const SafetensorsModel model(opened);
    CHECK(model.path() == (folder / "model.safetensors.index.json").string());
    CHECK(model.shards().size() == 2);
    CHECK(model.tensors().size() == 4);
    for (const TensorToWrite& tensor : sample.tensors) check_tensor(model.find(tensor.name), tensor);
    CHECK(model.find("missing") == nullptr);
    check_file_error([&] { (void)model.tensor("lm_head.weight"); }, model.path(), {"\"lm_head.weight\""});
  }

  elastic::test::TemporaryDirectory single;
  elastic::io::write_safetensors(single / "model.safetensors", sample.tensors);
  for (const auto& opened : {single.path(), single / "model.safetensors"}) {
    const SafetensorsModel model(opened);
    CHECK(model.shards().size() == 1);
    for (const TensorToWrite& tensor : sample.tensors) check_tensor(model.find(tensor.name), tensor);
  }
}

TEST_CASE("safetensors: every header rule rejects its corrupt copy") {
  const Bytes data = random_bytes(32, 5);
  const std::string good = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                           R"("v":{"dtype":"I16","shape":[8],"data_offsets":[16,32]},"__metadata__":{"k":"v"}})";
  REQUIRE(elastic::io::parse_safetensors_header(hand_written_file(good, data), "good").tensors.size() == 2);

  struct Case {
    const char* rule;
    std::string header;
    std::initializer_list<std::string_view> pieces;
  };
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  const Case cases[] = {
      {"malformed JSON", R"({"w":{"dtype":"F32",)", {"well-formed"}},
      {"invalid UTF-8", "{\"w\xff\":{}}", {"UTF-8"}},
      {"nesting", R"({"w":)" + deep + "}", {"nested deeper than 64"}},
      {"not an object", "[1,2]", {"JSON object", "array"}},
      {"duplicate tensor", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                           R"("w":{"dtype":"I16","shape":[8],"data_offsets":[16,32]}})",
       {"duplicate", "\"w\""}},
      {"duplicate field", R"({"w":{"dtype":"F32","dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})",
       {"duplicate", "\"dtype\""}},
      {"entry not an object", R"({"w":3})", {"\"w\"", "expected an object", "number"}},
      {"missing key", R"({"w":{"dtype":"F32","shape":[2,2]}})", {"\"w\"", "missing", "data_offsets"}},
      {"unexpected key", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16],"x":1}})",
       {"\"w\"", "unexpected key \"x\""}},
      {"unknown dtype", R"({"w":{"dtype":"F128","shape":[2,2],"data_offsets":[0,16]}})",
       {"\"w\"", "unknown dtype \"F128\"", "F8_E5M2"}},
      {"quantised dtype", R"({"w":{"dtype":"Q4_0","shape":[32],"data_offsets":[0,18]}})",
       {"\"w\"", "unknown dtype \"Q4_0\""}},
      {"dtype not a string", R"({"w":{"dtype":4,"shape":[2,2],"data_offsets":[0,16]}})",
       {"\"w\"", "dtype to be a string", "number 4"}},
      {"shape not an array", R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})",
       {"\"w\"", "shape to be an array"}},
      {"negative dimension", R"({"w":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}})",
       {"\"w\"", "non-negative integer", "-2"}},
      {"fractional dimension", R"({"w":{"dtype":"F32","shape":[2.5,2],"data_offsets":[0,16]}})",
       {"\"w\"", "non-negative integer", "2.5"}},
      {"element overflow", R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}})",
       {"\"w\"", "64 bits"}},
      {"byte overflow", R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16]}})",
       {"\"w\"", "64 bits of bytes"}},
      {"size mismatch", R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})",
       {"\"w\"", "hold 16 bytes", "expected 24"}},
      {"offsets past the data", R"({"w":{"dtype":"F32","shape":[2,4],"data_offsets":[8,40]}})",
       {"\"w\"", "[8, 40)", "data section of 32 bytes"}},
      {"begin after end", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[16,8]}})", {"\"w\"", "[16, 8)"}},
      {"offsets not a pair", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0]}})",
       {"\"w\"", "[begin, end]", "[0]"}},
      {"negative offset", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[-1,15]}})",
       {"\"w\"", "data_offsets[0]", "-1"}},
      {"overlap", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                  R"("v":{"dtype":"I16","shape":[8],"data_offsets":[8,24]}})",
       {"\"w\" [0, 16)", "\"v\" [8, 24)", "overlap"}},
      {"metadata not strings", R"({"__metadata__":{"k":1}})", {"__metadata__ key \"k\"", "string", "number 1"}},
      {"metadata not an object", R"({"__metadata__":[]})", {"__metadata__", "array"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.rule);
    check_file_error([&] { (void)elastic::io::parse_safetensors_header(hand_written_file(c.header, data), "bad.st"); },
                     "bad.st", c.pieces);
  }

  // The length prefix itself.
  const Bytes good_file = hand_written_file(good, data);
  check_file_error([&] { (void)elastic::io::parse_safetensors_header(std::span(good_file).first(5), "short"); },
                   "short", {"header length", "needs 8 bytes", "5 left"});
  Bytes lying = good_file;
  lying[0] = static_cast<std::byte>(0xff);
  check_file_error([&] { (void)elastic::io::parse_safetensors_header(lying, "lying"); }, "lying",
                   {"header length 255", "at most"});
  Bytes huge = good_file;
  huge[3] = static_cast<std::byte>(0x10);  // 268 MB
  check_file_error([&] { (void)elastic::io::parse_safetensors_header(huge, "huge"); }, "huge",
                   {"header length", "100000000"});

  // A file on disk reports its path.
  elastic::test::TemporaryDirectory folder;
  const auto path = folder / "model.safetensors";
  write_file(path, hand_written_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", data));
  check_file_error([&] { SafetensorsFile file(path.string()); }, path.string(), {"\"w\"", "expected 24"});
}

TEST_CASE("safetensors: index rules") {
  elastic::test::TemporaryDirectory folder;
  const SampleTensors sample;
  elastic::io::write_safetensors(folder / "shard.safetensors", sample.tensors);
  const auto index = folder / "model.safetensors.index.json";
  const auto check_index = [&](const std::string& text, std::initializer_list<std::string_view> pieces) {
    CAPTURE(text);
    write_file(index, Bytes(reinterpret_cast<const std::byte*>(text.data()),
                            reinterpret_cast<const std::byte*>(text.data() + text.size())));
    check_file_error([&] { SafetensorsModel model(folder.path()); }, index.string(), pieces);
  };
  check_index(R"({"weight_map":{"scale":"shard.safetensors","absent":"shard.safetensors"}})",
              {"\"absent\"", "\"shard.safetensors\"", "no such tensor"});
  check_index(R"({"weight_map":{"scale":"../shard.safetensors"}})", {"\"scale\"", "file name", "../shard"});
  check_index(R"({"weight_map":{"scale":"sub\\shard.safetensors"}})", {"\"scale\"", "file name"});
  check_index(R"({"weight_map":{"scale":".."}})", {"\"scale\"", "file name"});
  check_index(R"({"weight_map":{"scale":3}})", {"\"scale\"", "shard file name", "number 3"});
  check_index(R"({"metadata":{}})", {"weight_map"});
  check_index(R"({"weight_map":{"scale":"shard.safetensors","scale":"shard.safetensors"}})", {"duplicate", "scale"});
  check_index("{\"weight_map\":", {"well-formed"});

  // A shard that is not there names the shard's path.
  const std::string missing = R"({"weight_map":{"scale":"gone.safetensors"}})";
  write_file(index, Bytes(reinterpret_cast<const std::byte*>(missing.data()),
                          reinterpret_cast<const std::byte*>(missing.data() + missing.size())));
  check_file_error([&] { SafetensorsModel model(folder.path()); }, (folder / "gone.safetensors").string(),
                   {"cannot open"});

  elastic::test::TemporaryDirectory empty;
  check_file_error([&] { SafetensorsModel model(empty.path()); }, empty.path().string(),
                   {"model.safetensors.index.json", "model.safetensors", "neither"});
}

TEST_CASE("safetensors: the writer rejects bad tensors before writing anything") {
  elastic::test::TemporaryDirectory folder;
  const Bytes bytes = random_bytes(16, 6);
  const auto path = folder / "out.safetensors";
  const auto check_rejected = [&](std::vector<TensorToWrite> tensors, std::string_view piece) {
    CAPTURE(piece);
    try {
      elastic::io::write_safetensors(path, tensors);
      FAIL("expected Error");
    } catch (const elastic::Error& error) {
      CHECK_MESSAGE(std::string(error.what()).find(piece) != std::string::npos, error.what());
    }
    CHECK(folder_entries(folder.path()).empty());
  };
  check_rejected({{"q", TensorType::q8_0, {32}, bytes}}, "Q8_0");
  check_rejected({{"w", TensorType::f32, {2, 3}, bytes}}, "needs 24 bytes");
  check_rejected({{"w", TensorType::f32, {-4}, bytes}}, "non-negative");
  check_rejected({{"w", TensorType::f32, {4}, bytes}, {"w", TensorType::u8, {0}, {}}}, "appears twice");
  check_rejected({{"", TensorType::f32, {4}, bytes}}, "tensor name");
  check_rejected({{"__metadata__", TensorType::f32, {4}, bytes}}, "__metadata__");
  check_rejected({{"bad\xff", TensorType::f32, {4}, bytes}}, "UTF-8");
}

TEST_CASE("safetensors: a failed write leaves no file and no temporary; a good one replaces the old file") {
  elastic::test::TemporaryDirectory folder;
  const SampleTensors sample;
  // A folder where the file should go: everything is written, the rename fails.
  const auto blocked = folder / "blocked.safetensors";
  std::filesystem::create_directory(blocked);
  check_file_error([&] { elastic::io::write_safetensors(blocked, sample.tensors); }, blocked.string(), {"rename"});
  CHECK(folder_entries(folder.path()) == std::vector<std::string>{"blocked.safetensors"});
  CHECK(std::filesystem::is_empty(blocked));

  // A folder that does not exist: nothing can be created.
  check_file_error([&] { elastic::io::write_safetensors(folder / "absent" / "x.safetensors", sample.tensors); },
                   (folder / "absent" / "x.safetensors").string(), {"temporary file"});

  const auto path = folder / "model.safetensors";
  write_file(path, random_bytes(100, 7));
  elastic::io::write_safetensors(path, sample.tensors);
  CHECK(folder_entries(folder.path()) == std::vector<std::string>{"blocked.safetensors", "model.safetensors"});
  check_tensor(SafetensorsFile(path.string()).find("scale"), sample.tensors[2]);
}
