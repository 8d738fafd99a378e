// Token sampling: greedy is the argmax (ties to the lower id) and top-k = 1 is
// greedy at any temperature; top-p and min-p keep exactly the expected tokens
// on hand-made logits, in llama.cpp's order; many seeded draws follow the
// filtered, renormalised softmax (computed here independently) within a
// chi-square bound; equal seeds give equal tokens, pinned against recorded
// values; bad configurations and logits are refused with the field or token
// named; token_log_probability agrees with a direct float64 computation.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "elastic/model/sampling.hpp"
#include "support/error_message.hpp"

using namespace elastic;

namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// Logits in [-4, 4) from a fixed generator; ties are rare but possible.
std::vector<float> random_logits(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::vector<float> logits(count);
  for (float& logit : logits) logit = static_cast<float>(generator() % 8192) / 1024.0f - 4.0f;
  return logits;
}

// Logits whose temperature-1 softmax is proportional to the given weights.
std::vector<float> logits_of(const std::vector<double>& weights) {
  std::vector<float> logits;
  for (const double weight : weights) logits.push_back(static_cast<float>(std::log(weight)));
  return logits;
}

int reference_argmax(const std::vector<float>& logits) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(logits.size()); ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

// The distribution the sampler should draw from, built the plain way: every
// token's probability over the whole row, filters as token masks, and the
// tempered softmax of the survivors.
std::vector<double> reference_distribution(const std::vector<float>& logits, const SamplingConfig& config) {
  const std::size_t count = logits.size();
  std::vector<int> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  std::vector<bool> kept(count, true);
  if (config.top_k > 0)
    for (std::size_t rank = static_cast<std::size_t>(config.top_k); rank < count; ++rank) kept[order[rank]] = false;

  const auto softmax_of_kept = [&](double temperature) {
    std::vector<double> probabilities(count, 0.0);
    double total = 0.0;
    for (std::size_t i = 0; i < count; ++i)
      if (kept[i]) total += probabilities[i] = std::exp(logits[i] / temperature);
    for (double& probability : probabilities) probability /= total;
    return probabilities;
  };
  if (config.top_p < 1.0f) {
    const std::vector<double> probabilities = softmax_of_kept(1.0);
    double cumulative = 0.0;
    for (const int token : order) {
      if (!kept[token]) continue;
      if (cumulative > 0.0 && cumulative >= config.top_p) kept[token] = false;
      cumulative += probabilities[token];
    }
  }
  const std::vector<double> probabilities = softmax_of_kept(1.0);
  const double top = probabilities[order.front()];
  for (std::size_t i = 0; i < count; ++i)
    if (probabilities[i] < config.min_p * top) kept[i] = false;
  return softmax_of_kept(config.temperature);
}

std::vector<int> kept_tokens(Sampler& sampler, const std::vector<float>& logits) {
  std::vector<int> tokens;
  for (const TokenCandidate& candidate : sampler.distribution(logits)) tokens.push_back(candidate.token);
  std::sort(tokens.begin(), tokens.end());
  return tokens;
}

std::vector<int> kept_tokens(const SamplingConfig& config, const std::vector<float>& logits) {
  Sampler sampler(config);
  return kept_tokens(sampler, logits);
}

SamplingConfig config_with(float temperature, int top_k, float top_p, float min_p) {
  SamplingConfig config;
  config.temperature = temperature;
  config.top_k = top_k;
  config.top_p = top_p;
  config.min_p = min_p;
  return config;
}

using test::error_of;

}  // namespace

TEST_CASE("greedy sampling is the argmax with ties to the lower token id") {
  Sampler sampler{SamplingConfig{}};
  CHECK(sampler.config().greedy());
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const std::vector<float> logits = random_logits(1 + seed * 37, seed);
    CHECK(sampler.sample(logits) == reference_argmax(logits));
    CHECK(greedy_token(logits) == reference_argmax(logits));
  }
  CHECK(sampler.sample(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}) == 1);
  CHECK(sampler.sample(std::vector<float>{kMinusInfinity, -5.0f, kMinusInfinity}) == 1);
  const std::vector<float> all_equal(10, 0.5f);
  CHECK(greedy_token(all_equal) == 0);
}

TEST_CASE("top-k = 1 is greedy at any temperature, whatever top-p and min-p say") {
  for (const float temperature : {0.01f, 0.7f, 1.0f, 5.0f, 1000.0f}) {
    Sampler sampler(config_with(temperature, 1, 0.5f, 0.2f));
    CHECK(sampler.config().greedy());
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
      const std::vector<float> logits = random_logits(300, 100 + seed);
      CHECK(sampler.sample(logits) == reference_argmax(logits));
    }
    CHECK(sampler.sample(std::vector<float>{2.0f, 7.0f, 7.0f}) == 1);
  }
}

TEST_CASE("top-p keeps the shortest run of likely tokens that reaches p, on temperature-1 probabilities") {
  // Probabilities 0.1, 0.4, 0.2, 0.3 at tokens 0..3 (sorted: 1, 3, 2, 0).
  const std::vector<float> logits = logits_of({0.1, 0.4, 0.2, 0.3});
  CHECK(kept_tokens(config_with(1.0f, 0, 0.0f, 0.0f), logits) == std::vector<int>{1});
  CHECK(kept_tokens(config_with(1.0f, 0, 0.39f, 0.0f), logits) == std::vector<int>{1});
  CHECK(kept_tokens(config_with(1.0f, 0, 0.41f, 0.0f), logits) == std::vector<int>{1, 3});
  CHECK(kept_tokens(config_with(1.0f, 0, 0.69f, 0.0f), logits) == std::vector<int>{1, 3});
  CHECK(kept_tokens(config_with(1.0f, 0, 0.71f, 0.0f), logits) == std::vector<int>{1, 2, 3});
  CHECK(kept_tokens(config_with(1.0f, 0, 0.95f, 0.0f), logits) == std::vector<int>{0, 1, 2, 3});
  // The temperature reweights the survivors but does not choose them.
  CHECK(kept_tokens(config_with(50.0f, 0, 0.69f, 0.0f), logits) == std::vector<int>{1, 3});
  CHECK(kept_tokens(config_with(0.05f, 0, 0.71f, 0.0f), logits) == std::vector<int>{1, 2, 3});
  // Top-p after top-k: of the top two, token 1 alone has 4/7 > 0.55.
  CHECK(kept_tokens(config_with(1.0f, 2, 0.55f, 0.0f), logits) == std::vector<int>{1});
  CHECK(kept_tokens(config_with(1.0f, 0, 0.55f, 0.0f), logits) == std::vector<int>{1, 3});
  // Masked tokens never enter.
  CHECK(kept_tokens(config_with(1.0f, 0, 0.999f, 0.0f), std::vector<float>{kMinusInfinity, 0.0f, kMinusInfinity, 1.0f}) ==
        std::vector<int>{1, 3});
}

TEST_CASE("min-p keeps the tokens at least min_p times as likely as the top token") {
  const std::vector<float> logits = logits_of({0.1, 0.4, 0.2, 0.3});
  CHECK(kept_tokens(config_with(1.0f, 0, 1.0f, 0.2f), logits) == std::vector<int>{0, 1, 2, 3});
  CHECK(kept_tokens(config_with(1.0f, 0, 1.0f, 0.3f), logits) == std::vector<int>{1, 2, 3});
  CHECK(kept_tokens(config_with(1.0f, 0, 1.0f, 0.6f), logits) == std::vector<int>{1, 3});
  CHECK(kept_tokens(config_with(1.0f, 0, 1.0f, 0.8f), logits) == std::vector<int>{1});
  CHECK(kept_tokens(config_with(9.0f, 0, 1.0f, 0.6f), logits) == std::vector<int>{1, 3});
  // min_p = 1 keeps the tokens tied with the top, and only them.
  CHECK(kept_tokens(config_with(1.0f, 0, 1.0f, 1.0f), std::vector<float>{3.0f, 5.0f, 4.999f, 5.0f}) ==
        std::vector<int>{1, 3});
  // After top-p, min-p still measures against the top token: top-p 0.95 keeps
  // all four, min-p 0.6 then keeps two; after top-k 3, min-p 0.3 keeps three.
  CHECK(kept_tokens(config_with(1.0f, 0, 0.95f, 0.6f), logits) == std::vector<int>{1, 3});
  CHECK(kept_tokens(config_with(1.0f, 3, 1.0f, 0.3f), logits) == std::vector<int>{1, 2, 3});
}

TEST_CASE("the distribution and many draws match the filtered, renormalised softmax") {
  const std::vector<float> logits = {0.3f, 2.0f, -1.0f, 1.2f, 0.9f, 1.9f, -0.4f, 0.0f, 1.5f, kMinusInfinity};
  const SamplingConfig configs[] = {
      config_with(1.0f, 0, 1.0f, 0.0f),   config_with(0.7f, 5, 1.0f, 0.0f),  config_with(1.3f, 0, 0.8f, 0.0f),
      config_with(1.0f, 0, 1.0f, 0.15f),  config_with(0.9f, 7, 0.9f, 0.1f), config_with(2.5f, 0, 0.97f, 0.0f),
  };
  for (SamplingConfig config : configs) {
    config.seed = 2024;
    CAPTURE(config.temperature);
    CAPTURE(config.top_k);
    CAPTURE(config.top_p);
    CAPTURE(config.min_p);
    const std::vector<double> expected = reference_distribution(logits, config);
    Sampler sampler(config);

    double total = 0.0;
    for (const TokenCandidate& candidate : sampler.distribution(logits)) {
      CHECK(candidate.logit == logits[candidate.token]);
      CHECK(candidate.probability == doctest::Approx(expected[candidate.token]).epsilon(1e-12));
      total += candidate.probability;
    }
    CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(kept_tokens(sampler, logits).size() ==
          static_cast<std::size_t>(std::count_if(expected.begin(), expected.end(), [](double p) { return p > 0.0; })));

    constexpr int kDraws = 200000;
    std::vector<int> counts(logits.size(), 0);
    for (int draw = 0; draw < kDraws; ++draw) ++counts[sampler.sample(logits)];
    double chi_square = 0.0;
    int degrees_of_freedom = -1;
    for (std::size_t token = 0; token < logits.size(); ++token) {
      if (expected[token] == 0.0) {
        CHECK(counts[token] == 0);
        continue;
      }
      const double mean = kDraws * expected[token];
      chi_square += (counts[token] - mean) * (counts[token] - mean) / mean;
      ++degrees_of_freedom;
    }
    // Above the 99.99th percentile of chi-square for 1 to 8 degrees of freedom.
    CAPTURE(degrees_of_freedom);
    CHECK(chi_square < 15.0 + 2.5 * degrees_of_freedom);
  }
}

TEST_CASE("equal seeds give equal tokens, and the draws are pinned") {
  std::vector<float> logits(1000);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>((i * 37) % 101) / 16.0f;
  SamplingConfig config = config_with(0.8f, 40, 0.95f, 0.05f);
  config.seed = 7;
  Sampler first(config), second(config);
  std::vector<int> tokens;
  for (int step = 0; step < 200; ++step) {
    tokens.push_back(first.sample(logits));
    CHECK(second.sample(logits) == tokens.back());
  }
  config.seed = 8;
  Sampler other(config);
  int differences = 0;
  for (const int token : tokens) differences += other.sample(logits) != token;
  CHECK(differences > 100);

  // std::mt19937_64 is specified exactly and the uniform is derived from its
  // raw bits, so these values are the same on every platform.
  const std::vector<int> pinned(tokens.begin(), tokens.begin() + 8);
  CHECK(pinned == std::vector<int>{797, 524, 434, 322, 434, 131, 19, 322});
}

TEST_CASE("the sampler reuses its buffers between calls") {
  Sampler sampler(config_with(1.0f, 0, 0.9f, 0.0f));
  const std::vector<float> logits = random_logits(5000, 3);
  const TokenCandidate* const buffer = sampler.distribution(logits).data();
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> other = random_logits(5000 - seed * 100, 10 + seed);
    sampler.sample(other);
    CHECK(sampler.distribution(other).data() == buffer);
  }
}

TEST_CASE("bad configurations and logits are refused, naming the field or the token") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float infinity = std::numeric_limits<float>::infinity();
  CHECK(error_of([&] { Sampler{config_with(nan, 0, 1.0f, 0.0f)}; }).find("temperature") != std::string::npos);
  CHECK(error_of([&] { Sampler{config_with(-0.5f, 0, 1.0f, 0.0f)}; }).find("temperature: expected a finite value >= 0 "
                                                                           "(0 = greedy), found -0.5") != std::string::npos);
  CHECK(error_of([&] { Sampler{config_with(infinity, 0, 1.0f, 0.0f)}; }).find("found inf") != std::string::npos);
  CHECK(error_of([&] { Sampler{config_with(1.0f, -3, 1.0f, 0.0f)}; }).find("top_k: expected >= 0 (0 = off), found -3") !=
        std::string::npos);
  CHECK(error_of([&] { Sampler{config_with(1.0f, 0, nan, 0.0f)}; }).find("top_p: expected a value in [0, 1] (1 = off), found nan") !=
        std::string::npos);
  CHECK(error_of([&] { Sampler{config_with(1.0f, 0, 1.5f, 0.0f)}; }).find("top_p") != std::string::npos);
  CHECK(error_of([&] { Sampler{config_with(1.0f, 0, 1.0f, -0.1f)}; }).find("min_p: expected a value in [0, 1] (0 = off), found -0.1") !=
        std::string::npos);
  CHECK(error_of([&] { Sampler{config_with(1.0f, 0, 1.0f, nan)}; }).find("min_p") != std::string::npos);

  for (const SamplingConfig& config : {SamplingConfig{}, config_with(1.0f, 0, 0.9f, 0.1f)}) {
    Sampler sampler(config);
    CHECK(error_of([&] { sampler.sample(std::vector<float>{0.0f, nan, 1.0f}); }) ==
          "Sampler: expected finite logits or -inf, found NaN at token 1");
    CHECK(error_of([&] { sampler.sample(std::vector<float>{0.0f, 1.0f, infinity}); }) ==
          "Sampler: expected finite logits or -inf, found +inf at token 2");
    CHECK(error_of([&] { sampler.sample(std::vector<float>{}); }) ==
          "Sampler: expected a non-empty row of logits, found 0 values");
    CHECK(error_of([&] { sampler.sample(std::vector<float>(3, kMinusInfinity)); }) ==
          "Sampler: expected at least one finite logit, found all 3 -inf");
  }
  CHECK(error_of([] { token_log_probability(std::vector<float>{0.0f, 1.0f}, 2); }) ==
        "token_log_probability: expected a token in [0, 2), found 2");
  CHECK(error_of([] { token_log_probability(std::vector<float>{0.0f, 1.0f}, -1); }) ==
        "token_log_probability: expected a token in [0, 2), found -1");
  CHECK(error_of([&] { token_log_probability(std::vector<float>{nan, 1.0f}, 1); }) ==
        "token_log_probability: expected finite logits or -inf, found NaN at token 0");
  CHECK(error_of([&] { greedy_token(std::vector<float>{}); }) ==
        "greedy_token: expected a non-empty row of logits, found 0 values");
}

TEST_CASE("token_log_probability matches a direct float64 log softmax and stays finite far from zero") {
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = random_logits(2000, 500 + seed);
    double sum = 0.0;
    for (const float logit : logits) sum += std::exp(static_cast<double>(logit));
    for (const int token : {0, 17, 999, 1999}) {
      const double direct = std::log(std::exp(static_cast<double>(logits[token])) / sum);
      CHECK(token_log_probability(logits, token) == doctest::Approx(direct).epsilon(1e-12));
    }
    // Shifting by 2048 is exact for these logits and overflows exp in float64
    // beyond 709; the log probability is unchanged.
    std::vector<float> shifted = logits;
    for (float& logit : shifted) logit += 2048.0f;
    CHECK(token_log_probability(shifted, 5) == doctest::Approx(token_log_probability(logits, 5)).epsilon(1e-12));
  }
  const std::vector<float> masked = {kMinusInfinity, 0.0f, 0.0f};
  CHECK(token_log_probability(masked, 1) == doctest::Approx(std::log(0.5)).epsilon(1e-15));
  CHECK(token_log_probability(masked, 0) == -std::numeric_limits<double>::infinity());
}
