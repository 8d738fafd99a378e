// The host's vector row-dot kernel (host/simd/row_dots-inl.hpp) on every
// instruction set Highway compiled it for and this CPU runs, each forced in
// turn with hwy::SetSupportedTargetsForTest (so the AVX2, SSE4, SSSE3 and
// scalar builds are tested on an AVX-512 machine): linear, the fused SwiGLU
// and the gathered / scatter-add forms through the host executor, against
// float64, for each element type, over decode and prefill token counts that
// fill and straddle its groups of four and tiles of sixteen, output counts
// that fill and straddle its register tiles and chunks of rows, reduction
// lengths shorter than one vector, ending in a partial vector and spanning
// many, and weights that are column slices of wider matrices; and a token's
// outputs bitwise the same in any batch.
#include <doctest/doctest.h>

#include <hwy/targets.h>

#include <string>
#include <vector>

#include "support/forced_target.hpp"
#include "support/test_support.hpp"

using namespace elastic;

namespace {

template <class T>
void check_row_dots(host::Executor& executor, index_t length, int tokens, index_t out = 24) {
  CAPTURE(length);
  CAPTURE(tokens);
  CAPTURE(out);
  constexpr index_t padding = 16;  // the weights are the first `length` columns of wider rows
  const auto w = test::random_matrix<T>(out, length + padding, 1 + length, 0.3f);
  const auto gate = test::random_matrix<T>(out, length + padding, 2 + length, 0.3f);
  const auto up = test::random_matrix<T>(out, length + padding, 3 + length, 0.3f);
  const auto slice = [&](const test::HostMatrix<T>& m) { return m.view().first_cols(length); };
  const auto x = test::random_matrix<T>(tokens, length, 10 + tokens);
  const auto g = test::reference_linear(x, gate, out, length);
  const auto u = test::reference_linear(x, up, out, length);
  const auto linear = test::reference_linear(x, w, out, length);

  test::HostMatrix<T> y = test::poisoned_matrix<T>(tokens, out);
  executor.linear(y.view(), x.view(), slice(w));
  CHECK(test::relative_error(y, linear) < test::tolerance<T>());

  std::vector<double> swiglu(g.size());
  for (std::size_t i = 0; i < g.size(); ++i) swiglu[i] = test::reference_silu(g[i]) * u[i];
  test::HostMatrix<T> h = test::poisoned_matrix<T>(tokens, out);
  executor.swiglu(h.view(), x.view(), slice(gate), slice(up));
  CHECK(test::relative_error(h, swiglu) < test::tolerance<T>());

  // Token t reads input row order[t] and adds into output row order[t]: the
  // rows in reverse.
  std::vector<int> order(static_cast<std::size_t>(tokens));
  for (int t = 0; t < tokens; ++t) order[static_cast<std::size_t>(t)] = tokens - 1 - t;
  test::HostMatrix<T> gathered = test::poisoned_matrix<T>(tokens, out);
  executor.gather_swiglu(gathered.view(), x.view(), order.data(), slice(gate), slice(up));
  std::vector<double> gathered_expected(swiglu.size());
  for (int t = 0; t < tokens; ++t)
    for (index_t o = 0; o < out; ++o)
      gathered_expected[static_cast<std::size_t>(t * out + o)] = swiglu[static_cast<std::size_t>(order[t] * out + o)];
  CHECK(test::relative_error(gathered, gathered_expected) < test::tolerance<T>());

  const auto residual = test::random_matrix<T>(tokens, out, 99);
  test::HostMatrix<T> added = residual;
  executor.linear_scatter_add(added.view(), x.view(), slice(w), order.data());
  std::vector<double> added_expected(linear.size());
  for (int t = 0; t < tokens; ++t)
    for (index_t o = 0; o < out; ++o) {
      const auto at = static_cast<std::size_t>(order[t] * out + o);
      added_expected[at] = residual.at(order[t], o) + linear[static_cast<std::size_t>(t * out + o)];
    }
  CHECK(test::relative_error(added, added_expected) < test::tolerance<T>());
}

}  // namespace

TEST_CASE_TEMPLATE("host row dots match float64 on every compiled instruction set", T, float, half_t, bfloat16_t) {
  host::Executor executor(2);
  const std::vector<std::int64_t> targets = test::for_each_compiled_target([&] {
    constexpr index_t w = math::vector_width<T>;
    for (const index_t length : {w, 3 * w, 5 * w, 33 * w, 257 * w})
      for (const int tokens : {1, 2, 3, 4, 5, 8, 16, 17, 35}) check_row_dots<T>(executor, length, tokens);
    // Prefill: several token tiles, the last one partial; output counts
    // below, at and across the kernel's chunks of neurons and register tiles
    // of rows.
    for (const index_t length : {w, 7 * w, 65 * w})
      for (const int tokens : {33, 100})
        for (const index_t out : {8, 24, 40, 88}) check_row_dots<T>(executor, length, tokens, out);
  });
  // Without the restriction the kernel runs the best set again.
  CHECK(std::string(host::simd::kernels_target()) == hwy::TargetName(targets.front()));
}

// A token's outputs are the same bits whether it runs alone, in a decode
// batch or in a prefill batch, in any position.
TEST_CASE_TEMPLATE("host row dots give a token the same bits in any batch", T, float, half_t, bfloat16_t) {
  host::Executor executor(2);
  constexpr index_t length = 9 * math::vector_width<T>;  // whole vectors of AVX-512 and a tail
  constexpr index_t out = 40;
  constexpr int tokens = 70;
  const auto gate = test::random_matrix<T>(out, length, 1);
  const auto up = test::random_matrix<T>(out, length, 2);
  const auto x = test::random_matrix<T>(tokens, length, 3);
  test::HostMatrix<T> linear_all = test::poisoned_matrix<T>(tokens, out);
  test::HostMatrix<T> swiglu_all = test::poisoned_matrix<T>(tokens, out);
  executor.linear(linear_all.view(), x.view(), gate.view());
  executor.swiglu(swiglu_all.view(), x.view(), gate.view(), up.view());
  for (const int first : {0, 5, 37, 69})
    for (const int count : {1, 3, 16}) {
      if (first + count > tokens) continue;
      CAPTURE(first);
      CAPTURE(count);
      const ConstMatrixView<T> some = x.view().first_rows(first + count);
      test::HostMatrix<T> linear_some = test::poisoned_matrix<T>(count, out);
      test::HostMatrix<T> swiglu_some = test::poisoned_matrix<T>(count, out);
      const ConstMatrixView<T> rows(some.row(first), count, length, some.row_stride());
      executor.linear(linear_some.view(), rows, gate.view());
      executor.swiglu(swiglu_some.view(), rows, gate.view(), up.view());
      for (int t = 0; t < count; ++t)
        for (index_t o = 0; o < out; ++o) {
          CHECK(linear_some.at(t, o) == linear_all.at(first + t, o));
          CHECK(swiglu_some.at(t, o) == swiglu_all.at(first + t, o));
        }
    }
}
