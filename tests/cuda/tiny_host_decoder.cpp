// TinyHostDecoder (tiny_host_decoder.hpp): the checkpoint written to a
// temporary folder, loaded through io::ModelSource into HostWeights (the
// folder is gone once they hold the weights), and HostSequence runs on the
// host executor.
#include "cuda/tiny_host_decoder.hpp"

#include <memory>

#include "elastic/host/executor.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/host_weights.hpp"
#include "support/python.hpp"
#include "support/tiny_checkpoint.hpp"

namespace elastic::test {

template <ElementType T>
struct TinyHostDecoder<T>::State {
  State(std::uint64_t seed, bool tied)
      : weights(load(seed, tied)), decoder(weights.description(), weights.views()) {}

  static model::HostWeights<T> load(std::uint64_t seed, bool tied) {
    TinyModel m = nemotron_model();
    m.tied = tied;
    m.blocks[0].attention_has_linear = m.blocks[0].ffn_has_linear = true;  // elastic linear maps
    m.blocks[4].ffn_has_linear = true;
    const TemporaryDirectory folder;
    write_nemotron_folder(folder.path(), m, seed);
    return model::HostWeights<T>(io::ModelSource::open(folder.path()));
  }

  model::HostWeights<T> weights;
  model::Decoder<T> decoder;
  host::Executor executor{2};
  std::unique_ptr<model::HostSequence<T>> sequence;
};

template <ElementType T>
TinyHostDecoder<T>::TinyHostDecoder(std::uint64_t seed, bool tied) : state_(std::make_unique<State>(seed, tied)) {}

template <ElementType T>
TinyHostDecoder<T>::~TinyHostDecoder() = default;

template <ElementType T>
const io::ModelDescription& TinyHostDecoder<T>::description() const {
  return state_->weights.description();
}

template <ElementType T>
const model::ModelWeights<T>& TinyHostDecoder<T>::weights() const {
  return state_->weights.views();
}

template <ElementType T>
void TinyHostDecoder<T>::start_sequence(int capacity, const model::SubnetworkConfig& config) {
  state_->sequence = std::make_unique<model::HostSequence<T>>(state_->decoder, state_->executor, capacity, config);
}

template <ElementType T>
std::vector<float> TinyHostDecoder<T>::append(std::span<const int> tokens, int chunk) {
  const std::span<const float> logits = state_->sequence->append(tokens, chunk);
  return {logits.begin(), logits.end()};
}

template <ElementType T>
std::vector<float> TinyHostDecoder<T>::append_every(std::span<const int> tokens) {
  const std::span<const float> logits = state_->sequence->append_every(tokens);
  return {logits.begin(), logits.end()};
}

template class TinyHostDecoder<float>;
template class TinyHostDecoder<bfloat16_t>;

}  // namespace elastic::test
