// One call from a path to everything a model file holds: `ModelSource::open`
// takes a .gguf file, or a folder (or its config.json, or a safetensors file
// or index beside one) in Hugging Face layout, and yields the model
// description, every tensor the description needs by role (present, with the
// expected shape, checked up front), and the tokenizer spec when the files
// carry one (GGUF metadata, or tokenizer.json [+ tokenizer_config.json]).
// Every malformed input is a FileError naming the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "elastic/io/file_error.hpp"
#include "elastic/io/gguf.hpp"
#include "elastic/io/gguf_model.hpp"
#include "elastic/io/model_config.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/safetensors.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/io/tokenizer_json.hpp"
#include "elastic/io/tokenizer_spec.hpp"

namespace elastic::io {

enum class ModelFormat : std::uint8_t { gguf, safetensors };

class ModelSource {
 public:
  static ModelSource open(const std::filesystem::path& path) {
    require_file(std::filesystem::exists(path), path.string(), "no such file or folder");
    if (!std::filesystem::is_directory(path) && path.extension() == ".gguf") return open_gguf(path);
    return open_hugging_face(std::filesystem::is_directory(path) ? path : path.parent_path(), path);
  }

  const std::string& path() const { return path_; }
  ModelFormat format() const { return format_; }
  // "GGUF v3", "safetensors (1 file)", "safetensors (4 shards)".
  std::string format_description() const {
    if (const auto* gguf = std::get_if<std::unique_ptr<GgufFile>>(&files_))
      return "GGUF v" + std::to_string((*gguf)->version());
    const auto shards = std::get<std::unique_ptr<SafetensorsModel>>(files_)->shards().size();
    return "safetensors (" + std::to_string(shards) + (shards == 1 ? " file)" : " shards)");
  }
  // Bytes of the weight files together.
  std::uint64_t file_bytes() const { return file_bytes_; }

  const ModelDescription& description() const { return description_; }
  const std::optional<TokenizerSpec>& tokenizer() const { return tokenizer_; }

  // The tensor of `role` (in `layer` for per-layer roles); FileError when the
  // described model has no such tensor (a no-op half, a tied LM head).
  const StoredTensor& tensor(TensorRole role, int layer = -1) const {
    const StoredTensor* found = find(role, layer);
    require_file(found != nullptr, path_, "the model has no ", role_name(role), " tensor",
                 layer >= 0 ? " in layer " + std::to_string(layer) : std::string());
    return *found;
  }
  const StoredTensor* find(TensorRole role, int layer = -1) const {
    const auto found = by_role_.find({role, layer});
    return found == by_role_.end() ? nullptr : found->second;
  }

  // Every tensor in the files, the ones the model does not use included.
  std::vector<const StoredTensor*> tensors() const {
    if (const auto* gguf = std::get_if<std::unique_ptr<GgufFile>>(&files_)) {
      std::vector<const StoredTensor*> all;
      for (const StoredTensor& tensor : (*gguf)->tensors()) all.push_back(&tensor);
      return all;
    }
    return std::get<std::unique_ptr<SafetensorsModel>>(files_)->tensors();
  }

 private:
  using Files = std::variant<std::unique_ptr<GgufFile>, std::unique_ptr<SafetensorsModel>>;

  static ModelSource open_gguf(const std::filesystem::path& path) {
    auto file = std::make_unique<GgufFile>(path);
    ModelSource source;
    source.path_ = path.string();
    source.format_ = ModelFormat::gguf;
    source.description_ = describe_gguf_model(*file);
    if (file->find_string("tokenizer.ggml.model") != nullptr) source.tokenizer_ = gguf_tokenizer_spec(*file);
    source.file_bytes_ = std::filesystem::file_size(path);
    const GgufFile& gguf = *file;
    source.files_ = std::move(file);
    source.bind_tensors(TensorNaming::gguf, [&](const std::string& name) { return gguf.find_tensor(name); });
    return source;
  }

  // `folder` holds config.json; `given` is what the caller named (the folder,
  // config.json, or a safetensors file or index in it).
  static ModelSource open_hugging_face(const std::filesystem::path& folder, const std::filesystem::path& given) {
    ModelSource source;
    source.path_ = given.string();
    source.format_ = ModelFormat::safetensors;
    source.description_ = read_model_config(folder / "config.json");
    const bool weights_named = given.extension() == ".safetensors" || given.filename() == safetensors_index_name;
    auto weights = std::make_unique<SafetensorsModel>(weights_named ? given : folder);
    for (const SafetensorsFile& shard : weights->shards()) source.file_bytes_ += std::filesystem::file_size(shard.path());
    if (std::filesystem::exists(folder / "tokenizer.json"))
      source.tokenizer_ = read_tokenizer_json(folder / "tokenizer.json");
    const SafetensorsModel& model = *weights;
    source.files_ = std::move(weights);
    source.bind_tensors(TensorNaming::hugging_face, [&](const std::string& name) { return model.find(name); });
    return source;
  }

  template <class Find>
  void bind_tensors(TensorNaming naming, Find&& find_named) {
    for (const BoundTensor& bound : bind_required_tensors(description_, naming, find_named, path_))
      by_role_.emplace(std::pair{bound.slot.role, bound.slot.layer}, bound.tensor);
  }

  std::string path_;
  ModelFormat format_ = ModelFormat::gguf;
  Files files_;
  std::uint64_t file_bytes_ = 0;
  ModelDescription description_;
  std::optional<TokenizerSpec> tokenizer_;
  std::map<std::pair<TensorRole, int>, const StoredTensor*> by_role_;
};

}  // namespace elastic::io
