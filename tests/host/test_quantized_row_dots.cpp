// The host executor on block-quantised weights (core/quantized_matrix.hpp,
// host/quantized_row_dots.hpp) against float64, on every instruction set
// Highway compiled the kernel for and this CPU runs, each forced in turn.
//
// Weights are random but valid blocks of every format (random bytes, with
// moderate finite float16 scales written over the scale fields), decoded for
// the reference by io/quant_blocks.hpp, which is bit-exact with ggml. Two
// references per case: the dequantised weights against the activations the
// executor quantised (the kernel's own arithmetic, so only float32 summation
// order may differ), and against the activations as given (what the 8-bit
// activations cost, measured at a decode-sized shape by the last test case;
// another checks each quantised value is within half a step). Token counts
// fill and straddle the kernel's groups of four and tiles of sixteen,
// reduction lengths run from one block to many, weights are row and
// block-granular column prefixes of bigger matrices, activations and
// outputs are column slices of wider rows. Misuse (a column prefix that
// cuts a block, mismatched shapes or formats, bad indices, an output over
// the weight's bytes) throws before the poisoned output is touched.
#include <doctest/doctest.h>

#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "elastic/core/quantized_matrix.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/io/quant_blocks.hpp"
#include "elastic/io/quant_format.hpp"
#include "support/error_message.hpp"
#include "support/forced_target.hpp"
#include "support/test_support.hpp"

using namespace elastic;

namespace {

constexpr QuantFormat all_formats[] = {QuantFormat::q4_0, QuantFormat::q4_1, QuantFormat::q5_0, QuantFormat::q5_1,
                                       QuantFormat::q8_0, QuantFormat::q4_k, QuantFormat::q5_k, QuantFormat::q6_k};

// Byte offsets of a block's float16 scales (d, and m / dmin where the format has one).
std::vector<int> scale_offsets(QuantFormat format) {
  switch (format) {
    case QuantFormat::q4_0: return {0};
    case QuantFormat::q4_1: return {0, 2};
    case QuantFormat::q5_0: return {0};
    case QuantFormat::q5_1: return {0, 2};
    case QuantFormat::q8_0: return {0};
    case QuantFormat::q4_k: return {0, 2};
    case QuantFormat::q5_k: return {0, 2};
    case QuantFormat::q6_k: return {208};
  }
  return {};
}

// A rows x cols matrix of random valid blocks, each row `padding_bytes` wider
// than its blocks, with scales of random sign and a magnitude that keeps
// weights below about 2 (the K-quants' sub-block scales multiply theirs by
// up to 63 or 127), so float16 outputs stay finite.
struct QuantizedWeights {
  QuantizedWeights(QuantFormat format_, index_t rows_, index_t cols_, std::uint64_t seed, index_t padding_bytes = 0)
      : format(format_), rows(rows_), cols(cols_),
        row_bytes(QuantizedMatrixView::dense_row_bytes(format_, cols_) + padding_bytes),
        bytes(static_cast<std::size_t>(rows_ * row_bytes)) {
    std::mt19937_64 engine(seed);
    for (std::byte& b : bytes) b = static_cast<std::byte>(engine() & 0xFFu);
    const QuantFormatInfo info = quant_format_info(format);
    const float largest = info.block_elements == 256 ? 0.0005f : 0.02f;
    std::uniform_real_distribution<float> magnitude(largest / 10, largest);
    for (index_t r = 0; r < rows; ++r)
      for (index_t k = 0; k < cols / info.block_elements; ++k)
        for (const int offset : scale_offsets(format)) {
          const float scale = (engine() & 1u) != 0 ? magnitude(engine) : -magnitude(engine);
          const std::uint16_t bits = from_float<half_t>(scale).bits;
          std::memcpy(&bytes[static_cast<std::size_t>(r * row_bytes + k * info.block_bytes + offset)], &bits, 2);
        }
  }

  QuantizedMatrixView view() const { return {format, bytes.data(), rows, cols, row_bytes}; }

  QuantFormat format;
  index_t rows;
  index_t cols;
  index_t row_bytes;
  std::vector<std::byte> bytes;
};

// The view's weights decoded by ggml's rules, row-major.
std::vector<double> dequantized(const QuantizedMatrixView& w) {
  const io::quant::BlockDecoder decode = io::quant::block_decoder(io::tensor_type(w.format()));
  const QuantFormatInfo info = quant_format_info(w.format());
  std::vector<double> values(static_cast<std::size_t>(w.rows() * w.cols()));
  std::vector<float> block(static_cast<std::size_t>(info.block_elements));
  for (index_t r = 0; r < w.rows(); ++r)
    for (index_t k = 0; k < w.blocks_per_row(); ++k) {
      decode(w.row(r) + k * info.block_bytes, block.data());
      for (index_t i = 0; i < info.block_elements; ++i)
        values[static_cast<std::size_t>(r * w.cols() + k * info.block_elements + i)] =
            block[static_cast<std::size_t>(i)];
    }
  return values;
}

// The activations x as the executor quantises them (s * a per element).
template <class T>
std::vector<double> quantized_activations(ConstMatrixView<T> x) {
  host::ThreadPool pool(1);
  host::QuantizedActivationRows rows;
  rows.quantize(pool, x, x.rows(), nullptr);
  const host::simd::QuantizedActivations q = rows.from_token(0);
  std::vector<double> values(static_cast<std::size_t>(x.rows() * x.cols()));
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<double>(q.scales[i / host::simd::activation_block]) * q.values[i];
  return values;
}

template <class T>
std::vector<double> widened(ConstMatrixView<T> x) {
  std::vector<double> values;
  for (index_t t = 0; t < x.rows(); ++t)
    for (index_t i = 0; i < x.cols(); ++i) values.push_back(to_float(x(t, i)));
  return values;
}

// y[t, o] = x[t] . w[o] in float64 for row-major x (tokens x length) and w (out x length).
std::vector<double> products(const std::vector<double>& x, const std::vector<double>& w, index_t tokens, index_t out,
                             index_t length) {
  std::vector<double> y(static_cast<std::size_t>(tokens * out));
  for (index_t t = 0; t < tokens; ++t)
    for (index_t o = 0; o < out; ++o) {
      double sum = 0.0;
      for (index_t i = 0; i < length; ++i)
        sum += x[static_cast<std::size_t>(t * length + i)] * w[static_cast<std::size_t>(o * length + i)];
      y[static_cast<std::size_t>(t * out + o)] = sum;
    }
  return y;
}

// The output columns [0, out) of a wider matrix (poisoned unless given), and
// a dense copy of them for comparing.
template <class T>
struct SlicedOutput {
  SlicedOutput(index_t tokens, index_t out_) : SlicedOutput(out_, test::poisoned_matrix<T>(tokens, out_ + 19)) {}
  SlicedOutput(index_t out_, test::HostMatrix<T> storage_) : out(out_), storage(std::move(storage_)) {}
  MatrixView<T> view() { return storage.view().first_cols(out); }
  test::HostMatrix<T> dense() const {
    test::HostMatrix<T> result(storage.rows, out);
    for (index_t t = 0; t < storage.rows; ++t)
      for (index_t o = 0; o < out; ++o)
        result.values[static_cast<std::size_t>(t * out + o)] =
            storage.values[static_cast<std::size_t>(t * storage.cols + o)];
    return result;
  }
  index_t out;
  test::HostMatrix<T> storage;
};

// Relative-error budget against the float64 reference on the executor's
// quantised activations: float32 sums, then the output's rounding.
template <class T>
constexpr double kernel_tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : test::tolerance<T>();
}

// Against the activations as given, a loose bound that catches a wrong
// quantisation rule: the 8-bit activations cost about 0.4% on uniform random
// data (a step / sqrt(12) against the values' spread), more on the few
// outputs of the smallest cases. The test case below measures it properly.
constexpr double activation_quantization_tolerance = 5e-2;

template <class T>
void check_forms(host::Executor& executor, QuantFormat format, index_t length, int tokens) {
  CAPTURE(std::string(quant_format_info(format).name));
  CAPTURE(length);
  CAPTURE(tokens);
  constexpr index_t out = 13;
  const index_t block = quant_format_info(format).block_elements;
  // Row and column prefixes of bigger matrices with padded rows.
  const QuantizedWeights w_full(format, out + 3, length + block, 1 + length, 48);
  const QuantizedWeights gate_full(format, out + 5, length + 2 * block, 2 + length);
  const QuantizedWeights up_full(format, out, length, 3 + length, 16);
  const QuantizedMatrixView w = w_full.view().first_rows(out).first_cols(length);
  const QuantizedMatrixView gate = gate_full.view().first_cols(length).first_rows(out);
  const QuantizedMatrixView up = up_full.view();
  // Activations are the first columns of wider rows.
  const auto x_full = test::random_matrix<T>(tokens, length + 40, 10 + tokens);
  const ConstMatrixView<T> x = x_full.view().first_cols(length);

  const std::vector<double> x_quantized = quantized_activations(x);
  const std::vector<double> x_given = widened(x);
  const auto w_values = dequantized(w);
  const auto gate_values = dequantized(gate);
  const auto up_values = dequantized(up);
  const auto compare = [&](const test::HostMatrix<T>& y, const std::vector<double>& on_quantized,
                           const std::vector<double>& on_given) {
    CHECK(test::relative_error(y, on_quantized) < kernel_tolerance<T>());
    CHECK(test::relative_error(y, on_given) < activation_quantization_tolerance);
  };
  const auto swiglu_of = [&](const std::vector<double>& activations) {
    const auto g = products(activations, gate_values, tokens, out, length);
    const auto u = products(activations, up_values, tokens, out, length);
    std::vector<double> h(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) h[i] = test::reference_silu(g[i]) * u[i];
    return h;
  };
  // Token t reads input row order[t] and adds into output row order[t]: the rows in reverse.
  std::vector<int> order(static_cast<std::size_t>(tokens));
  for (int t = 0; t < tokens; ++t) order[static_cast<std::size_t>(t)] = tokens - 1 - t;
  const auto reordered = [&](const std::vector<double>& rows) {
    std::vector<double> result(rows.size());
    for (int t = 0; t < tokens; ++t)
      for (index_t o = 0; o < out; ++o)
        result[static_cast<std::size_t>(t * out + o)] =
            rows[static_cast<std::size_t>(order[static_cast<std::size_t>(t)] * out + o)];
    return result;
  };

  {
    SlicedOutput<T> y(tokens, out);
    executor.linear(y.view(), x, w);
    compare(y.dense(), products(x_quantized, w_values, tokens, out, length),
            products(x_given, w_values, tokens, out, length));
  }
  {
    SlicedOutput<T> h(tokens, out);
    executor.swiglu(h.view(), x, gate, up);
    compare(h.dense(), swiglu_of(x_quantized), swiglu_of(x_given));
  }
  {
    SlicedOutput<T> h(tokens, out);
    executor.gather_swiglu(h.view(), x, order.data(), gate, up);
    compare(h.dense(), reordered(swiglu_of(x_quantized)), reordered(swiglu_of(x_given)));
  }
  {
    SlicedOutput<T> added(out, test::random_matrix<T>(tokens, out + 19, 99));
    const SlicedOutput<T> residual = added;
    executor.linear_scatter_add(added.view(), x, w, order.data());
    // Row order[t] of the result is residual + token t's product.
    const auto with_residual = [&](const std::vector<double>& linear) {
      std::vector<double> expected(linear.size());
      for (int t = 0; t < tokens; ++t)
        for (index_t o = 0; o < out; ++o) {
          const int row = order[static_cast<std::size_t>(t)];
          expected[static_cast<std::size_t>(row * out + o)] =
              residual.storage.at(row, o) + linear[static_cast<std::size_t>(t * out + o)];
        }
      return expected;
    };
    compare(added.dense(), with_residual(products(x_quantized, w_values, tokens, out, length)),
            with_residual(products(x_given, w_values, tokens, out, length)));
  }
}

// The call throws elastic::Error with a message containing every part.
template <class Call>
void expect_error(Call&& call, std::initializer_list<const char*> parts) {
  const std::string message = test::error_of(call);
  CAPTURE(message);
  for (const char* part : parts) CHECK(message.find(part) != std::string::npos);
}

}  // namespace

TEST_CASE("quantized activations are within half a step of the values given") {
  const auto x = test::random_matrix<float>(3, 96, 5, 4.0f);
  host::ThreadPool pool(1);
  host::QuantizedActivationRows rows;
  rows.quantize(pool, x.view(), 3, nullptr);
  const host::simd::QuantizedActivations q = rows.from_token(0);
  for (int k = 0; k < 3 * 3; ++k) {
    CAPTURE(k);
    const float scale = q.scales[k];
    int sum = 0;
    float largest = 0.0f;
    for (int i = 0; i < 32; ++i) {
      const int a = q.values[k * 32 + i];
      const float given = x.values[static_cast<std::size_t>(k * 32 + i)];
      CHECK(std::abs(a) <= 127);
      CHECK(std::abs(given - scale * static_cast<float>(a)) <= 0.5f * scale * (1.0f + 1e-5f));
      largest = std::max(largest, std::fabs(given));
      sum += a;
    }
    CHECK(scale == largest / 127.0f);
    CHECK(q.scaled_sums[k] == scale * static_cast<float>(sum));
  }
}

TEST_CASE_TEMPLATE("host quantized row dots match float64 on every compiled instruction set", T, float, half_t,
                   bfloat16_t) {
  host::Executor executor(2);
  const std::vector<std::int64_t> targets = test::for_each_compiled_target([&] {
    for (const QuantFormat format : all_formats) {
      const index_t block = quant_format_info(format).block_elements;
      for (const index_t blocks : {1, 2, 3, 9})
        for (const int tokens : {1, 2, 3, 4, 5, 8, 16, 17, 35})
          check_forms<T>(executor, format, blocks * block, tokens);
    }
  });
  CHECK(std::string(host::simd::kernels_target()) == hwy::TargetName(targets.front()));
}

TEST_CASE("quantized weight views take row prefixes and block-granular column prefixes only") {
  const QuantizedWeights q4(QuantFormat::q4_0, 4, 128, 1);
  CHECK(q4.view().first_rows(2).rows() == 2);
  CHECK(q4.view().first_cols(64).cols() == 64);
  CHECK(q4.view().first_cols(64).row_bytes() == q4.view().row_bytes());
  expect_error([&] { (void)q4.view().first_cols(40); },
                            {"first 40 columns", "Q4_0", "multiple of the 32-element block"});
  expect_error([&] { (void)q4.view().first_rows(5); }, {"row range [0, 5)"});
  const QuantizedWeights q4k(QuantFormat::q4_k, 2, 512, 2);
  expect_error([&] { (void)q4k.view().first_cols(288); },
                            {"first 288 columns", "Q4_K", "multiple of the 256-element block"});
  expect_error([&] { QuantizedMatrixView(QuantFormat::q8_0, q4.bytes.data(), 2, 48, 64); },
                            {"Q8_0", "multiple of 32 columns", "found 48"});
  expect_error([&] { QuantizedMatrixView(QuantFormat::q8_0, q4.bytes.data(), 2, 64, 60); },
                            {"takes 68 bytes", "stride is 60"});
}

TEST_CASE("quantized executor calls reject bad shapes before writing") {
  host::Executor executor(2);
  const QuantizedWeights w(QuantFormat::q4_1, 8, 64, 1);
  const QuantizedWeights q8(QuantFormat::q8_0, 8, 64, 2);
  const auto x = test::random_matrix<float>(3, 64, 3);
  const auto wide_x = test::random_matrix<float>(3, 96, 4);
  auto y = test::poisoned_matrix<float>(3, 8);
  expect_error([&] { executor.linear(y.view(), wide_x.view(), w.view()); },
                            {"linear", "input has 96 columns", "Q4_1"});
  CHECK(test::all_poison(y));
  auto narrow = test::poisoned_matrix<float>(3, 4);
  expect_error([&] { executor.linear(narrow.view(), x.view(), w.view()); },
                            {"linear", "output must be [3 x 8]"});
  CHECK(test::all_poison(narrow));
  expect_error([&] { executor.swiglu(y.view(), x.view(), w.view(), q8.view()); },
                            {"swiglu", "up weight", "gate weight's format and shape"});
  CHECK(test::all_poison(y));
  const std::vector<int> bad_rows{0, 3, 1};
  expect_error([&] { executor.gather_swiglu(y.view(), x.view(), bad_rows.data(), w.view(), w.view()); },
                            {"gather_swiglu", "index 1 is 3"});
  CHECK(test::all_poison(y));
  expect_error(
      [&] { executor.linear_scatter_add(y.view(), x.view(), w.view(), static_cast<const int*>(nullptr)); },
      {"linear_scatter_add", "null pointer"});
  CHECK(test::all_poison(y));
  // The output may not overlap the weight's bytes.
  auto* aliased = reinterpret_cast<float*>(const_cast<std::byte*>(w.bytes.data()));
  expect_error([&] { executor.linear(MatrixView<float>(aliased, 3, 8, 8), x.view(), w.view()); },
                            {"linear", "output overlaps the weight"});
}

// What the 8-bit activations cost against dequantised weights in float64, at
// a decode-sized shape (1536 inputs, 64 outputs, 16 tokens, uniform random
// activations in [-1, 1]): reported, and bounded well above what it is.
TEST_CASE("quantized activations cost well under one percent against dequantised float64") {
  host::Executor executor(2);
  constexpr index_t length = 1536;
  constexpr index_t out = 64;
  constexpr index_t tokens = 16;
  const auto x = test::random_matrix<float>(tokens, length, 7);
  for (const QuantFormat format : all_formats) {
    CAPTURE(std::string(quant_format_info(format).name));
    const QuantizedWeights w(format, out, length, 8);
    const auto reference = products(widened(x.view()), dequantized(w.view()), tokens, out, length);
    test::HostMatrix<float> y(tokens, out);
    executor.linear(y.view(), x.view(), w.view());
    const double error = test::relative_error(y, reference);
    MESSAGE(quant_format_info(format).name, ": relative error ", error,
            " against dequantised weights and float activations in float64");
    CHECK(error < 1e-2);
  }
}
