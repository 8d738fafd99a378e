// The host side of the CUDA decoder tests: a tiny random nemotron-nas
// checkpoint with every block kind (support/tiny_checkpoint.hpp: GQA with 1,
// 2 and 4 KV heads, linear and no-op attention, SwiGLU, linear and no-op
// FFN; layer 0 also stores linear maps beside both halves, layer 4 beside
// its FFN), its LM head tied to the embedding or not, loaded as T in host memory, and one HostSequence over it whose logits
// the CUDA runs are compared with. It is compiled by the host compiler
// (tiny_host_decoder.cpp), so the checkpoint writer and reader and the host
// decoder stay out of the nvcc translation units, which see only this
// interface.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::test {

template <ElementType T>
class TinyHostDecoder {
 public:
  // Writes the checkpoint with weights drawn from `seed` and loads it.
  explicit TinyHostDecoder(std::uint64_t seed, bool tied = false);
  ~TinyHostDecoder();

  const io::ModelDescription& description() const;
  const model::ModelWeights<T>& weights() const;  // host memory

  // Replaces the sequence with an empty one of `capacity` positions that
  // runs `config`.
  void start_sequence(int capacity, const model::SubnetworkConfig& config);

  // HostSequence::append and append_every on the sequence, the logits copied.
  std::vector<float> append(std::span<const int> tokens, int chunk);
  std::vector<float> append_every(std::span<const int> tokens);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

extern template class TinyHostDecoder<float>;
extern template class TinyHostDecoder<bfloat16_t>;

}  // namespace elastic::test
