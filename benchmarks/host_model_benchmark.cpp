// The whole decoder on the host at SmolLM2-135M's shapes (30 layers, hidden
// 576, 9 query / 3 KV heads of 64, SwiGLU 1536, vocabulary 49152, tied LM
// head) with random weights, at every MLP width of the deployment set
// {384, 768, 1152, 1536}, in both forms a decoder takes its widths:
//
//   .../any_width     Decoder<T>: any width at run time (a loaded checkpoint)
//   .../width_set     Decoder<T, Widths<384, 768, 1152, 1536>>: a deployment
//                     that names its widths (checked up front; the kernels
//                     take the length at run time in both forms)
//
// decode: one token after 128 cached positions (the step rewrites position
// 128, so the cache stays the same size); prefill: 64 tokens into an empty
// cache. Counters: tokens per second, and the weight bytes one step reads
// per second (every layer's sliced weights plus the LM head). Times are wall
// clock on the executor's thread pool (every hardware thread).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <map>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "elastic/host/executor.hpp"
#include "elastic/host/workspace_buffer.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/stored_tensor.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_weights.hpp"
#include "mlp_benchmark.hpp"

namespace {

using namespace elastic;
using DeploymentWidths = Widths<384, 768, 1152, 1536>;

constexpr int kCachedPositions = 128;
constexpr int kPrefillTokens = 64;

io::ModelDescription smollm2_shapes() {
  io::ModelDescription model;
  model.architecture = "llama";
  model.name = "SmolLM2-135M shapes, random weights";
  model.hidden = 576;
  model.vocab = 49152;
  model.heads = 9;
  model.head_dim = 64;
  model.rms_epsilon = 1e-5f;
  model.rope.theta = 100000.0f;
  model.rope.max_positions = 8192;
  model.tied_embeddings = true;
  model.layers.assign(30, io::LayerPlan{io::AttentionKind::gqa, 3, io::FfnKind::swiglu, 1536});
  return model;
}

// Every tensor the model reads, float32, uniform in +-0.05 (norms near 1).
class RandomSource {
 public:
  RandomSource() : description_(smollm2_shapes()) {
    std::mt19937 engine(7);
    for (const io::TensorSlot& slot : io::required_tensors(description_)) {
      std::int64_t count = 1;
      for (std::int64_t dim : slot.shape) count *= dim;
      const bool norm = slot.role == io::TensorRole::attention_norm || slot.role == io::TensorRole::ffn_norm ||
                        slot.role == io::TensorRole::output_norm;
      std::uniform_real_distribution<float> uniform(norm ? 0.9f : -0.05f, norm ? 1.1f : 0.05f);
      std::vector<float>& values = storage_.emplace_back(static_cast<std::size_t>(count));
      for (float& value : values) value = uniform(engine);
      tensors_[{slot.role, slot.layer}] = {"random", io::TensorType::f32, slot.shape, std::as_bytes(std::span(values))};
    }
  }

  const io::ModelDescription& description() const { return description_; }
  const io::StoredTensor& tensor(io::TensorRole role, int layer) const { return tensors_.at({role, layer}); }

 private:
  io::ModelDescription description_;
  std::vector<std::vector<float>> storage_;
  std::map<std::pair<io::TensorRole, int>, io::StoredTensor> tensors_;
};

const RandomSource& source() {
  static const RandomSource instance;
  return instance;
}

template <ElementType T>
const model::HostWeights<T>& weights() {
  static const model::HostWeights<T> instance(source());
  return instance;
}

host::Executor& executor() {
  static host::Executor instance(0);
  return instance;
}

// Bytes of the weights one step reads at MLP width `width`.
template <ElementType T>
double step_weight_bytes(const io::ModelDescription& model, int width) {
  const double hidden = double(model.hidden), q = double(model.heads * model.head_dim);
  double elements = double(model.vocab) * hidden;  // LM head
  for (const io::LayerPlan& layer : model.layers) {
    const double kv = double(layer.kv_heads * model.head_dim);
    elements += (2 * q + 2 * kv) * hidden + 3.0 * width * hidden + 2 * hidden;
  }
  return elements * sizeof(T);
}

template <ElementType T, WidthSet MlpWidths>
void run_step(benchmark::State& state, bool decode) {
  bench::run_or_skip(state, [&] {
    const model::HostWeights<T>& loaded = weights<T>();
    const io::ModelDescription& description = loaded.description();
    model::Decoder<T, MlpWidths> decoder(description, loaded.views());
    model::SubnetworkConfig config = model::SubnetworkConfig::full(description);
    const int width = static_cast<int>(state.range(0));
    for (model::LayerChoice& layer : config.layers) layer.mlp_width = width;

    const model::ModelCacheShape shape = decoder.cache_shape(1, kCachedPositions + kPrefillTokens);
    host::WorkspaceBuffer cache_memory(shape.template bytes_required<T>());
    const model::ModelKVCache<T> cache(cache_memory.get(), shape);
    const int fresh = decode ? 1 : kPrefillTokens;
    std::vector<int> tokens(static_cast<std::size_t>(std::max(fresh, kCachedPositions)));
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int>((i * 7919) % 49152);
    host::WorkspaceBuffer logits(static_cast<std::size_t>(description.vocab) * sizeof(float));
    host::WorkspaceBuffer workspace;
    const auto run = [&](int cached, int count) {
      const int slot = 0;
      const AttentionBatch batch{std::span(&slot, 1), std::span(&cached, 1), std::span(&count, 1), {}};
      const std::size_t bytes = decoder.workspace_bytes(executor(), batch, shape, model::LogitsFor::last_token);
      if (workspace.bytes() < bytes) workspace = host::WorkspaceBuffer(bytes);
      decoder.forward(executor(), config, std::span(tokens.data(), static_cast<std::size_t>(count)), batch, cache,
                      model::LogitsFor::last_token,
                      MatrixView<float>(static_cast<float*>(logits.get().data), 1, description.vocab), workspace.get());
    };
    if (decode) run(0, kCachedPositions);  // the positions every step attends to
    const int cached = decode ? kCachedPositions : 0;
    for (auto _ : state) run(cached, fresh);
    state.counters["tokens_per_second"] =
        benchmark::Counter(double(fresh), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["weight_bytes_per_second"] =
        benchmark::Counter(step_weight_bytes<T>(description, width), benchmark::Counter::kIsIterationInvariantRate);
  });
}

template <ElementType T, WidthSet MlpWidths>
void register_cases(const char* dtype, const char* widths) {
  for (const bool decode : {true, false}) {
    const std::string name = std::string("smollm2_shapes/") + dtype + "/" + (decode ? "decode" : "prefill") + "/" +
                             widths;
    auto* bench = benchmark::RegisterBenchmark(name.c_str(), [decode](benchmark::State& state) {
      run_step<T, MlpWidths>(state, decode);
    });
    for (int width : DeploymentWidths::values) bench->Arg(width);
    bench->ArgName("mlp_width")->Unit(benchmark::kMillisecond)->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_cases<float, AnyWidth>("f32", "any_width");
  register_cases<float, DeploymentWidths>("f32", "width_set");
  register_cases<bfloat16_t, AnyWidth>("bf16", "any_width");
  register_cases<bfloat16_t, DeploymentWidths>("bf16", "width_set");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  return bench::finish_benchmarks("elastic_host_model_benchmark");
}
