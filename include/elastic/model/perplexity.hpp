// Perplexity of a model over a token sequence, the way `elastic perplexity`
// and conversion's held-out checks measure it: non-overlapping windows of
// `window` tokens (a tail that does not fill one is left out), each run from
// an empty cache and scored on every position but its first:
// exp(-mean log p(token t+1 | tokens <= t)). The sequence is any owner of a
// KV cache with reset() and append_every() (HostSequence, DeviceSequence).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include "elastic/core/error.hpp"
#include "elastic/model/sampling.hpp"

namespace elastic::model {

struct PerplexityScore {
  double negative_log_likelihood = 0.0;  // summed over the scored positions
  std::size_t scored = 0;                // positions scored
  std::size_t windows = 0;

  double perplexity() const { return std::exp(negative_log_likelihood / static_cast<double>(scored)); }
};

// Windows of `tokens` a score over windows of `window` tokens runs, at most
// `max_windows` (0: every whole window). Throws when not one fits.
inline std::size_t perplexity_windows(std::size_t tokens, std::size_t window, std::size_t max_windows = 0) {
  require(window >= 2, "perplexity: a window must hold at least 2 tokens, found ", window);
  const std::size_t windows = tokens / window;
  require(windows > 0, "perplexity: ", tokens, " tokens do not fill one window of ", window);
  return max_windows == 0 ? windows : std::min(windows, max_windows);
}

// Scores the windows perplexity_windows() counts; after each window calls
// on_window(const PerplexityScore& so_far).
template <class Sequence, class OnWindow>
PerplexityScore score_windows(Sequence& sequence, std::span<const int> tokens, std::size_t window,
                              std::size_t max_windows, OnWindow&& on_window) {
  const std::size_t windows = perplexity_windows(tokens.size(), window, max_windows);
  const auto vocab = static_cast<std::size_t>(sequence.vocab());
  PerplexityScore score;
  for (std::size_t w = 0; w < windows; ++w) {
    sequence.reset();
    const std::span<const int> chunk = tokens.subspan(w * window, window);
    const std::span<const float> logits = sequence.append_every(chunk);
    for (std::size_t t = 0; t + 1 < window; ++t)
      score.negative_log_likelihood -= token_log_probability(logits.subspan(t * vocab, vocab), chunk[t + 1]);
    score.scored += window - 1;
    score.windows = w + 1;
    on_window(score);
  }
  return score;
}

}  // namespace elastic::model
