// Choosing the next token from one row of float32 logits, on the host: greedy
// (argmax), or a seeded random draw after top-k, top-p (nucleus) and min-p
// filtering with a temperature, plus the log-probability of a given token for
// perplexity. Generation calls this once per decoded token, so a Sampler keeps
// its buffers between calls and allocates nothing once it has seen a row of
// the vocabulary's size. Draws reproduce bit for bit across machines and
// standard libraries for the same seed and logits: the generator is
// std::mt19937_64 (its output is fixed by the standard) and the uniform number
// is built from its raw 64 bits here, not by std::uniform_real_distribution,
// whose output each library implements its own way.
//
// The filters run in llama.cpp's default order, each on what the previous one
// kept:
//   1. top-k  keep the k highest logits (ties: the lower token id first);
//   2. top-p  keep the shortest run of the most likely tokens whose summed
//             probability reaches p (the token that crosses p is kept);
//   3. min-p  keep the tokens whose probability is at least min_p times the
//             top token's;
//   4. temperature  divide the surviving logits by T, renormalise, draw.
// Top-p and min-p see temperature-1 probabilities, as llama.cpp's sampler chain
// does, so the temperature changes how the survivors are weighted, never which
// tokens survive. The top token always survives every filter.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "elastic/core/error.hpp"

namespace elastic {

// Default seed of SamplingConfig: fixed, so runs reproduce unless the caller
// chooses otherwise.
inline constexpr std::uint64_t default_sampling_seed = 0x454c415354494300ull;

struct SamplingConfig {
  float temperature = 0.0f;  // 0: greedy (argmax); otherwise > 0
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off; in [0, 1]
  float min_p = 0.0f;        // 0: off; in [0, 1]
  std::uint64_t seed = default_sampling_seed;

  bool greedy() const { return temperature == 0.0f || top_k == 1; }

  // Throws elastic::Error naming the first field out of range and its value.
  void validate() const {
    require(std::isfinite(temperature) && temperature >= 0.0f,
            "SamplingConfig.temperature: expected a finite value >= 0 (0 = greedy), found ", temperature);
    require(top_k >= 0, "SamplingConfig.top_k: expected >= 0 (0 = off), found ", top_k);
    require(top_p >= 0.0f && top_p <= 1.0f, "SamplingConfig.top_p: expected a value in [0, 1] (1 = off), found ", top_p);
    require(min_p >= 0.0f && min_p <= 1.0f, "SamplingConfig.min_p: expected a value in [0, 1] (0 = off), found ", min_p);
  }
};

// A token the sampler may draw and its probability after filtering and
// temperature (the probabilities of one distribution sum to 1).
struct TokenCandidate {
  int token = 0;
  float logit = 0.0f;
  double probability = 0.0;
};

namespace detail {

// Checks a logits row (non-empty, indexable by int, no NaN or +inf, not all
// -inf; -inf masks a token out) and returns its argmax, ties to the lower id.
inline int checked_argmax(std::span<const float> logits, const char* op) {
  require(!logits.empty(), op, ": expected a non-empty row of logits, found 0 values");
  require(logits.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max()), op,
          ": expected at most ", std::numeric_limits<int>::max(), " logits, found ", logits.size());
  int best = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float logit = logits[i];
    require(!std::isnan(logit), op, ": expected finite logits or -inf, found NaN at token ", i);
    require(logit != std::numeric_limits<float>::infinity(), op, ": expected finite logits or -inf, found +inf at token ",
            i);
    if (logit > logits[best]) best = static_cast<int>(i);
  }
  require(std::isfinite(logits[best]), op, ": expected at least one finite logit, found all ", logits.size(), " -inf");
  return best;
}

// A double uniform in [0, 1) from the top 53 bits of one 64-bit draw: the
// same on every platform.
inline double uniform_unit(std::mt19937_64& generator) {
  return static_cast<double>(generator() >> 11) * 0x1.0p-53;
}

}  // namespace detail

// The greedy choice: the highest logit, ties to the lower token id.
inline int greedy_token(std::span<const float> logits) { return detail::checked_argmax(logits, "greedy_token"); }

// log softmax(logits)[token], computed in double (max-shifted log-sum-exp):
// the per-token term of perplexity, exp(-mean log p).
inline double token_log_probability(std::span<const float> logits, int token) {
  constexpr auto op = "token_log_probability";
  const double top = logits[static_cast<std::size_t>(detail::checked_argmax(logits, op))];
  require(token >= 0 && static_cast<std::size_t>(token) < logits.size(), op, ": expected a token in [0, ",
          logits.size(), "), found ", token);
  double sum = 0.0;
  for (const float logit : logits) sum += std::exp(static_cast<double>(logit) - top);
  return static_cast<double>(logits[static_cast<std::size_t>(token)]) - top - std::log(sum);
}

class Sampler {
 public:
  explicit Sampler(SamplingConfig config) : config_(config), generator_(config.seed) { config_.validate(); }

  const SamplingConfig& config() const { return config_; }

  // The next token for this row of logits. Greedy configurations consume no
  // random numbers; the others exactly one per call.
  int sample(std::span<const float> logits) {
    const std::span<const TokenCandidate> kept = distribution(logits);
    if (kept.size() == 1) return kept.front().token;
    const double draw = detail::uniform_unit(generator_);
    double cumulative = 0.0;
    int last_possible = kept.front().token;
    for (const TokenCandidate& candidate : kept) {
      if (candidate.probability <= 0.0) continue;
      cumulative += candidate.probability;
      last_possible = candidate.token;
      if (draw < cumulative) return candidate.token;
    }
    return last_possible;  // rounding left the cumulative sum just under the draw
  }

  // The distribution sample() draws from for these logits: the tokens that
  // survive the filters with their probabilities after temperature, in a
  // deterministic order (descending probability when top-p is on or top-k
  // cut the row, token order otherwise). Valid until the next call; draws
  // nothing.
  std::span<const TokenCandidate> distribution(std::span<const float> logits) {
    const int best = detail::checked_argmax(logits, "Sampler");
    candidates_.clear();
    if (config_.greedy()) {
      candidates_.push_back({best, logits[static_cast<std::size_t>(best)], 1.0});
      return candidates_;
    }
    const double top = logits[static_cast<std::size_t>(best)];
    for (std::size_t i = 0; i < logits.size(); ++i)
      if (std::isfinite(logits[i])) candidates_.push_back({static_cast<int>(i), logits[i], 0.0});
    keep_top_k();
    keep_top_p(top);
    keep_min_p(top);
    set_probabilities(top, 1.0 / static_cast<double>(config_.temperature));
    return candidates_;
  }

 private:
  static bool more_likely(const TokenCandidate& a, const TokenCandidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
  }

  void keep_top_k() {
    if (config_.top_k == 0 || static_cast<std::size_t>(config_.top_k) >= candidates_.size()) return;
    const auto k = static_cast<std::ptrdiff_t>(config_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(), more_likely);
    candidates_.resize(static_cast<std::size_t>(k));
  }

  // Top-p on the temperature-1 probabilities of what top-k kept (the sort is
  // cheap after a top-k cut, which leaves its k sorted).
  void keep_top_p(double top) {
    if (config_.top_p >= 1.0f) return;
    std::sort(candidates_.begin(), candidates_.end(), more_likely);
    set_probabilities(top, 1.0);
    const double target = config_.top_p;
    double cumulative = 0.0;
    std::size_t kept = 0;
    while (kept < candidates_.size()) {
      cumulative += candidates_[kept++].probability;
      if (cumulative >= target) break;
    }
    candidates_.resize(kept);
  }

  // Min-p: p / p_top = exp(logit - top logit) >= min_p.
  void keep_min_p(double top) {
    if (config_.min_p <= 0.0f) return;
    const double floor = config_.min_p;
    std::erase_if(candidates_, [&](const TokenCandidate& candidate) {
      return std::exp(static_cast<double>(candidate.logit) - top) < floor;
    });
  }

  // The softmax of the candidates' logits times inverse_temperature, shifted
  // by the top logit (which every filter keeps, so the sum is at least 1).
  void set_probabilities(double top, double inverse_temperature) {
    double total = 0.0;
    for (TokenCandidate& candidate : candidates_) {
      candidate.probability = std::exp((static_cast<double>(candidate.logit) - top) * inverse_temperature);
      total += candidate.probability;
    }
    for (TokenCandidate& candidate : candidates_) candidate.probability /= total;
  }

  SamplingConfig config_;
  std::mt19937_64 generator_;
  std::vector<TokenCandidate> candidates_;
};

}  // namespace elastic
