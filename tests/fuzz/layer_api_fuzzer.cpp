// A libFuzzer property harness for the layer API on the host executor.
//
// Each input decodes into one call (or a short chain: a router's logits and
// route, then the routed MLP they feed): which layer or routing primitive,
// its element type (float, half_t, bfloat16_t), shapes, widths in and out of
// the layer's set, token counts, ragged attention batches (slots, cached and
// new lengths, positions, INT_MAX and negative ones included), route choices
// and rules (NaN thresholds included), workspace sizes around the size query,
// and now and then an output placed over another buffer. Every buffer of a
// call is a block of one arena, filled from a seeded RNG (never zeros), with
// poisoned gaps between the blocks, so ASan sees any access past a view and
// one snapshot covers everything a call could touch. Once the input runs out
// every decision takes a value inside the contract, so short inputs are
// valid calls that mutations then push to the edges.
//
// The property, checked after every call:
//   * it throws elastic::Error (or a subclass) and left every byte outside its
//     workspace as it was; a call decoded entirely inside the documented
//     contract must not throw at all; or
//   * it returns, what it wrote matches a float64 reference computed here
//     (max|out - ref| / max|ref| within a per-type tolerance; copies, route
//     decisions, plans and lengths exactly), and it wrote nothing else.
// Anything else (another exception type, a crash, a sanitizer report, a
// mismatch) prints the decoded case and aborts, so libFuzzer keeps the input.
#include <fuzzer/FuzzedDataProvider.h>
#include <sanitizer/asan_interface.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "elastic/elastic.hpp"
#include "support/attention_reference.hpp"

namespace {

using namespace elastic;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------
// Decoding

// The decisions of one input, each noted in a description printed on failure.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : bytes_(data, size) {}

  // An integer in [lo, hi]; lo once the input is used up.
  int pick(std::string_view name, int lo, int hi) {
    const int value = hi <= lo ? lo : bytes_.ConsumeIntegralInRange(lo, hi);
    note(name, std::to_string(value));
    return value;
  }

  // One of `values`; the first once the input is used up.
  template <class V, std::size_t N>
  V pick_of(std::string_view name, const V (&values)[N]) {
    return values[static_cast<std::size_t>(pick(name, 0, static_cast<int>(N) - 1))];
  }

  // True for about one decision in eight (never once the input is used up):
  // the caller then decodes a value that may break the contract, so the call
  // may be rejected.
  bool stray(std::string_view name) {
    if (bytes_.ConsumeIntegralInRange(0, 7) != 7) return false;
    in_contract_ = false;
    note(name, "stray");
    return true;
  }

  // An int at or past the edge of any range here: negative, zero, INT_MAX and
  // its neighbours, INT_MIN, or any 32-bit value.
  int edge_int(std::string_view name) {
    static constexpr int edges[] = {-1, 0, 1, 3, 12, 40, 48, -8, 1 << 20, INT_MAX, INT_MAX - 1, INT_MIN};
    const int value = bytes_.ConsumeBool() ? edges[bytes_.ConsumeIntegralInRange<std::size_t>(0, std::size(edges) - 1)]
                                           : bytes_.ConsumeIntegral<int>();
    note(name, std::to_string(value));
    return value;
  }

  // False once any decision strayed outside the contract.
  bool in_contract() const { return in_contract_; }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    std::fprintf(stderr, "\nlayer API property violated: %s\ncase: %s\n", detail::concat(parts...).c_str(),
                 description_.c_str());
    std::abort();
  }

 private:
  void note(std::string_view name, std::string_view value) {
    description_.append(name).append("=").append(value).append(" ");
  }

  FuzzedDataProvider bytes_;
  bool in_contract_ = true;
  std::string description_;
};

template <class T>
float at(const ConstMatrixView<T>& m, index_t r, index_t c) {
  return to_float(m(r, c));
}

// The row length of a matrix of `cols` elements: padded by whole 16-byte
// vectors inside the contract, now and then by a count that misaligns rows.
template <class T>
index_t decode_stride(Input& in, std::string_view name, index_t cols) {
  if (in.stray(name)) return cols + in.pick(name, 1, 3);
  return cols + math::vector_width<T> * in.pick(name, 0, 2);
}

// A hidden size: whole 16-byte vectors of any element type inside the
// contract (8 to 64), else any multiple of 4 up to 64.
index_t decode_hidden(Input& in) {
  if (in.stray("hidden")) return 4 * in.pick("hidden/4", 1, 16);
  return 8 * in.pick("hidden/8", 1, 8);
}

// A width from a layer's set, or now and then any int.
template <std::size_t N>
int decode_width(Input& in, std::string_view name, const std::array<int, N>& set) {
  if (in.stray(name)) return in.edge_int(name);
  return set[static_cast<std::size_t>(in.pick(name, 0, static_cast<int>(N) - 1))];
}

// The columns of an activation for a width that may be anything: the width
// when it can be allocated, else a small count that cannot match it.
index_t cols_for(int width) { return width >= 1 && width <= 128 ? width : 8; }

// ---------------------------------------------------------------------------
// The arena

// An input too large for the arena; it is skipped.
struct TooLarge {};

// Every buffer of one input, as blocks of one static allocation with poisoned
// gaps between them (and after the last), so ASan reports any access outside
// the blocks and outside memory an output was placed over, and one snapshot
// covers everything a call may touch.
class Arena {
 public:
  static constexpr std::size_t capacity = std::size_t{16} << 20;
  static constexpr std::size_t gap = 64;  // poisoned bytes at least, before every block

  Arena() : memory_(capacity), before_(capacity) { ASAN_POISON_MEMORY_REGION(memory_.data(), capacity); }

  void reset(std::uint64_t seed) {
    ASAN_POISON_MEMORY_REGION(memory_.data(), used_);
    blocks_.clear();
    live_.clear();
    used_ = 0;
    random_ = 0x9e3779b97f4a7c15u * (seed + 1);
  }

  // A block of `count` elements: element types get uniform values in
  // [-scale, scale] (never zero), ints a sentinel, bytes a pattern.
  template <class T>
  T* add(std::string_view name, std::size_t count, float scale = 1.0f) {
    const std::size_t offset = align_up(used_ + gap, workspace_alignment);
    if (count > capacity / sizeof(T) || offset + count * sizeof(T) > capacity) throw TooLarge{};
    const std::size_t bytes = count * sizeof(T);
    std::byte* data = memory_.data() + offset;
    ASAN_UNPOISON_MEMORY_REGION(data, bytes);
    blocks_.push_back({name, offset, bytes});
    live_.push_back({offset, offset + bytes});
    used_ = offset + bytes;
    T* typed = reinterpret_cast<T*>(data);
    for (std::size_t i = 0; i < count; ++i) {
      if constexpr (std::is_same_v<T, int>) typed[i] = 0x5a5a5a5a;
      else if constexpr (std::is_same_v<T, std::byte>) typed[i] = std::byte{0xa5};
      else typed[i] = from_float<T>(uniform(scale));
    }
    return typed;
  }

  // Where an output of `bytes` bytes whose own block is `home` goes: there,
  // or when the input strays, at some offset into any block (overlapping it
  // exactly, partly or misaligned, and maybe the blocks after it).
  template <class T>
  T* place(Input& in, std::string_view name, T* home, std::size_t bytes) {
    if (bytes == 0 || blocks_.empty() || !in.stray(name)) return home;
    const Block& target = blocks_[static_cast<std::size_t>(in.pick("over block", 0, static_cast<int>(blocks_.size()) - 1))];
    std::size_t offset = target.offset + static_cast<std::size_t>(in.pick("at byte", 0, static_cast<int>(target.bytes)));
    offset -= offset % alignof(T);
    if (offset + bytes > capacity) return home;
    cover(offset, offset + bytes);
    return reinterpret_cast<T*>(memory_.data() + offset);
  }

  // Copies every live byte (blocks and memory outputs were placed over).
  void snapshot() {
    merge_live();
    for (const Range& range : merged_)
      std::memcpy(before_.data() + range.begin, memory_.data() + range.begin, range.end - range.begin);
  }

  // The snapshot's copy of live memory (null stays null).
  template <class T>
  const T* before(const T* live) const {
    if (live == nullptr) return nullptr;
    return reinterpret_cast<const T*>(before_.data() + (reinterpret_cast<const std::byte*>(live) - memory_.data()));
  }
  template <class T>
  ConstMatrixView<T> before(const MatrixView<T>& view) const {
    return {before(view.data()), view.rows(), view.cols(), view.row_stride()};
  }

  // Takes the current bytes of [data, data + bytes) into the snapshot: what a
  // call was expected to write there.
  void accept(const void* data, std::size_t bytes) {
    const auto* first = static_cast<const std::byte*>(data);
    std::memcpy(before_.data() + (first - memory_.data()), first, bytes);
  }

  // The first live byte outside `excluded` that differs from the snapshot, in
  // words, if any.
  std::optional<std::string> first_change(const Workspace& excluded) const {
    const std::size_t skip_begin =
        excluded.bytes == 0 ? 0 : static_cast<std::size_t>(static_cast<const std::byte*>(excluded.data) - memory_.data());
    const std::size_t skip_end = skip_begin + excluded.bytes;
    for (const Range& range : merged_) {
      const std::size_t cut = std::clamp(skip_begin, range.begin, range.end);
      const std::size_t resume = std::clamp(skip_end, cut, range.end);
      if (const auto changed = first_difference(range.begin, cut)) return describe(*changed);
      if (const auto changed = first_difference(resume, range.end)) return describe(*changed);
    }
    return std::nullopt;
  }

 private:
  struct Block {
    std::string_view name;
    std::size_t offset, bytes;
  };
  struct Range {
    std::size_t begin, end;
  };

  float uniform(float scale) {
    random_ ^= random_ << 13;
    random_ ^= random_ >> 7;
    random_ ^= random_ << 17;
    const float unit = static_cast<float>(random_ >> 40) * 0x1.0p-24f * 2.0f - 1.0f;  // [-1, 1)
    return scale * (unit == 0.0f ? 0.5f : unit);
  }

  // Makes [begin, end) live; bytes of it in no block are zeroed.
  void cover(std::size_t begin, std::size_t end) {
    ASAN_UNPOISON_MEMORY_REGION(memory_.data() + begin, end - begin);
    std::size_t cursor = begin;
    for (const Block& block : blocks_) {
      if (block.offset + block.bytes <= cursor) continue;
      if (block.offset >= end) break;
      if (block.offset > cursor) std::memset(memory_.data() + cursor, 0, block.offset - cursor);
      cursor = std::max(cursor, block.offset + block.bytes);
    }
    if (cursor < end) std::memset(memory_.data() + cursor, 0, end - cursor);
    live_.push_back({begin, end});
    used_ = std::max(used_, end);
  }

  void merge_live() {
    std::vector<Range> sorted = live_;
    std::sort(sorted.begin(), sorted.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    merged_.clear();
    for (const Range& range : sorted) {
      if (!merged_.empty() && range.begin <= merged_.back().end) merged_.back().end = std::max(merged_.back().end, range.end);
      else merged_.push_back(range);
    }
  }

  std::optional<std::size_t> first_difference(std::size_t begin, std::size_t end) const {
    if (begin >= end || std::memcmp(memory_.data() + begin, before_.data() + begin, end - begin) == 0) return std::nullopt;
    while (memory_[begin] == before_[begin]) ++begin;
    return begin;
  }

  std::string describe(std::size_t offset) const {
    for (const Block& block : blocks_)
      if (offset >= block.offset && offset < block.offset + block.bytes)
        return detail::concat("byte ", offset - block.offset, " of the ", block.name);
    return detail::concat("byte ", offset, " of the arena, in memory an output was placed over");
  }

  std::vector<std::byte, test::AlignedAllocator<std::byte, workspace_alignment>> memory_, before_;
  std::vector<Block> blocks_;
  std::vector<Range> live_, merged_;
  std::size_t used_ = 0;
  std::uint64_t random_ = 1;
};

Arena& arena() {
  static Arena instance;
  return instance;
}

host::Executor& executor() {
  static host::Executor instance(2);
  return instance;
}

// A [rows x cols] matrix in a block of its own.
template <class T>
MatrixView<T> add_matrix(std::string_view name, index_t rows, index_t cols, index_t stride, float scale = 1.0f) {
  return {arena().add<T>(name, static_cast<std::size_t>(rows * stride), scale), rows, cols, stride};
}

// An output matrix where Arena::place puts it.
template <class T>
MatrixView<T> place(Input& in, std::string_view name, const MatrixView<T>& home) {
  const auto bytes = static_cast<std::size_t>(home.rows() * home.row_stride()) * sizeof(T);
  return {arena().place(in, name, home.data(), bytes), home.rows(), home.cols(), home.row_stride()};
}

// An int array in a block of its own, with room for `extra` more.
int* add_ints(std::string_view name, const std::vector<int>& values, std::size_t extra = 0) {
  int* data = arena().add<int>(name, values.size() + extra);
  std::copy(values.begin(), values.end(), data);
  return data;
}

// The workspace a call gets: the size query's bytes plus a margin inside the
// contract; now and then fewer, none, or (as placed) a misaligned start.
Workspace decode_workspace(Input& in, std::optional<std::size_t> query) {
  std::size_t bytes = query.value_or(0);
  if (in.stray("workspace size")) {
    const std::size_t fewer[] = {bytes, bytes / 2, 256, 1, 0};
    const std::size_t cut = fewer[static_cast<std::size_t>(in.pick("fewer bytes", 0, 4))];
    bytes = cut <= bytes ? bytes - cut : 0;
  } else {
    bytes += static_cast<std::size_t>(in.pick_of("workspace margin", {0, 1, 256, 4096}));
  }
  std::byte* home = arena().add<std::byte>("workspace", bytes);
  return {arena().place(in, "workspace", home, bytes), bytes};
}

// ---------------------------------------------------------------------------
// The property

// What a successful call must have written, per output tensor: float64
// values within a relative tolerance (0: exactly), ints exactly.
class Expected {
 public:
  struct Tensor {
    template <class T>
    void add(const T* element, double value) {
      entries.push_back({reinterpret_cast<const std::byte*>(element), value});
    }

    std::string_view name;
    double tolerance;
    double (*load)(const std::byte*);
    std::size_t element_bytes;
    std::vector<std::pair<const std::byte*, double>> entries;
  };

  template <class T>
  Tensor& tensor(std::string_view name, double tolerance) {
    return tensors_.emplace_back(Tensor{name, tolerance, &load<T>, sizeof(T), {}});
  }

  // Compares every expectation with the arena, then takes the expected bytes
  // into the arena's snapshot, so that Arena::first_change sees only writes
  // that were not expected.
  void verify(const Input& in, std::string_view call) const {
    for (const Tensor& tensor : tensors_) {
      double scale = 0.0, worst = 0.0;
      for (const auto& [element, value] : tensor.entries)
        if (std::isfinite(value)) scale = std::max(scale, std::abs(value));
      for (const auto& [element, value] : tensor.entries) {
        const double actual = tensor.load(element);
        const bool same_non_finite = std::isnan(value) ? std::isnan(actual) : actual == value;
        if (!std::isfinite(value) && !same_non_finite)
          in.fail(call, ": ", tensor.name, " holds ", actual, " where the reference is ", value);
        if (std::isfinite(value) && !std::isfinite(actual))
          in.fail(call, ": ", tensor.name, " holds ", actual, " where the reference is ", value);
        if (std::isfinite(value)) worst = std::max(worst, std::abs(actual - value));
      }
      if (worst > tensor.tolerance * scale)
        in.fail(call, ": ", tensor.name, " is off the float64 reference by ", worst, " (", worst / scale,
                " of its largest value ", scale, "), tolerance ", tensor.tolerance);
      for (const auto& entry : tensor.entries) arena().accept(entry.first, tensor.element_bytes);
    }
  }

 private:
  template <class T>
  static double load(const std::byte* element) {
    T value;
    std::memcpy(&value, element, sizeof value);
    if constexpr (std::is_same_v<T, int>) return value;
    else return to_float(value);
  }

  std::deque<Tensor> tensors_;
};

// Relative tolerances against float64 (max|out - ref| / max|ref|): float32
// accumulation, and for the 16-bit types the rounding of each intermediate
// the executor stores (activations, projections, rotated keys) and of the
// output. A wrong width, head count or route changes results by tens of
// percent.
template <class T>
constexpr double tolerance() {
  if constexpr (std::is_same_v<T, float>) return 1e-4;
  else if constexpr (std::is_same_v<T, half_t>) return 1e-2;
  else return 2e-2;
}

// The value of a constructor or a size query, or nothing when it rejects its
// arguments with elastic::Error (never inside the contract).
template <class F>
auto attempt(const Input& in, std::string_view what, F&& f) -> std::optional<decltype(f())> {
  try {
    return f();
  } catch (const Error& error) {
    if (in.in_contract()) in.fail(what, " rejected arguments inside the contract: ", error.what());
    return std::nullopt;
  } catch (const std::exception& error) {
    in.fail(what, " threw a std::exception that is not an elastic::Error: ", error.what());
  } catch (...) {
    in.fail(what, " threw something that is not a std::exception");
  }
}

// Runs one call: true when it returned (then check() what it wrote); an
// elastic::Error must leave the arena as it was outside `workspace`.
template <class Call>
bool returns(const Input& in, std::string_view what, const Workspace& workspace, Call&& call) {
  arena().snapshot();
  try {
    call();
    return true;
  } catch (const Error& error) {
    if (in.in_contract()) in.fail(what, " rejected a call inside the contract: ", error.what());
    if (const auto changed = arena().first_change(workspace))
      in.fail(what, " threw \"", error.what(), "\" after writing ", *changed);
    return false;
  } catch (const std::exception& error) {
    in.fail(what, " threw a std::exception that is not an elastic::Error: ", error.what());
  } catch (...) {
    in.fail(what, " threw something that is not a std::exception");
  }
}

// After a call returned: the expected writes, and no others outside `workspace`.
void check(const Input& in, std::string_view what, const Expected& expected, const Workspace& workspace) {
  expected.verify(in, what);
  if (const auto changed = arena().first_change(workspace)) in.fail(what, " returned but also wrote ", *changed);
}

// A call that returned must have been given arguments its contract allows
// (the references below index with them).
void require_accepted(const Input& in, std::string_view call, bool allowed, std::string_view what) {
  if (!allowed) in.fail(call, " returned, but ", what);
}

// A view that claims more rows than an int counts, over one real row: only
// for calls that must narrow token counts to int before touching memory.
template <class T>
MatrixView<T> claim_huge_rows(const MatrixView<T>& view, Input& in) {
  return {view.data(), index_t{INT_MAX} + in.pick("rows past INT_MAX", 1, 2), view.cols(), view.row_stride()};
}

// ---------------------------------------------------------------------------
// float64 references (over the snapshot)

// down(silu(gate x) * up x) of one token over the first `width` neurons.
template <class T>
std::vector<double> reference_mlp(const MLPWeights<T>& w, const T* x, int width) {
  const index_t hidden = w.gate.cols();
  std::vector<double> activation(static_cast<std::size_t>(width));
  for (int j = 0; j < width; ++j) {
    double gate = 0.0, up = 0.0;
    for (index_t i = 0; i < hidden; ++i) {
      gate += double{to_float(x[i])} * at(w.gate, j, i);
      up += double{to_float(x[i])} * at(w.up, j, i);
    }
    activation[static_cast<std::size_t>(j)] = test::reference_silu(gate) * up;
  }
  std::vector<double> y(static_cast<std::size_t>(hidden));
  for (index_t o = 0; o < hidden; ++o)
    for (int j = 0; j < width; ++j) y[static_cast<std::size_t>(o)] += activation[static_cast<std::size_t>(j)] * at(w.down, o, j);
  return y;
}

template <class T>
MLPWeights<T> before(const MLPWeights<T>& w) {
  return {arena().before(w.gate), arena().before(w.up), arena().before(w.down)};
}

// w . x for one token: w's rows, over its columns.
template <class T>
std::vector<double> reference_rows_dot(const ConstMatrixView<T>& w, const double* x) {
  std::vector<double> y(static_cast<std::size_t>(w.rows()));
  for (index_t o = 0; o < w.rows(); ++o)
    for (index_t i = 0; i < w.cols(); ++i) y[static_cast<std::size_t>(o)] += x[i] * at(w, o, i);
  return y;
}

template <class T>
std::vector<double> row_of(const ConstMatrixView<T>& m, index_t r) {
  std::vector<double> row(static_cast<std::size_t>(m.cols()));
  for (index_t c = 0; c < m.cols(); ++c) row[static_cast<std::size_t>(c)] = at(m, r, c);
  return row;
}

// ---------------------------------------------------------------------------
// MLP and linear layers

using MlpWidths = Widths<8, 16, 24, 32>;

// ElasticMLP weights in the arena: [intermediate x hidden] gate and up,
// [hidden x intermediate] down, scaled like a trained layer.
template <class T>
MLPWeights<T> add_mlp_weights(Input& in) {
  const index_t hidden = decode_hidden(in);
  const index_t intermediate =
      in.stray("intermediate") ? in.pick_of("intermediate", {24, 36, 44}) : in.pick_of("intermediate", {32, 40});
  const float in_scale = 1.0f / std::sqrt(static_cast<float>(hidden));
  const MatrixView<T> gate = add_matrix<T>("gate weight", intermediate, hidden, decode_stride<T>(in, "gate stride", hidden), in_scale);
  const MatrixView<T> up = add_matrix<T>("up weight", intermediate, hidden, decode_stride<T>(in, "up stride", hidden), in_scale);
  const MatrixView<T> down = add_matrix<T>("down weight", hidden, intermediate,
                                           decode_stride<T>(in, "down stride", intermediate),
                                           1.0f / std::sqrt(static_cast<float>(intermediate)));
  return {gate, up, down};
}

template <class T>
void fuzz_mlp_forward(Input& in) {
  const MLPWeights<T> weights = add_mlp_weights<T>(in);
  const index_t hidden = weights.gate.cols();
  const int tokens = in.pick("tokens", 0, 32);
  const MatrixView<T> x = add_matrix<T>("input x", tokens, hidden, decode_stride<T>(in, "x stride", hidden));
  const bool in_place = in.pick("in place", 0, 1) == 1;
  const index_t y_rows = in.stray("y rows") ? tokens + 1 : tokens;
  const MatrixView<T> y_home =
      in_place && y_rows == tokens ? x : add_matrix<T>("output y", y_rows, hidden, decode_stride<T>(in, "y stride", hidden));
  const auto mlp = attempt(in, "ElasticMLP", [&] { return ElasticMLP<T, MlpWidths>(weights); });
  if (!mlp) return;
  const int width = decode_width(in, "width", MlpWidths::values);
  const Workspace workspace =
      decode_workspace(in, attempt(in, "ElasticMLP::workspace_bytes", [&] { return mlp->workspace_bytes(executor(), tokens); }));
  const MatrixView<T> y = y_home.data() == x.data() ? x : place(in, "output y", y_home);

  constexpr auto call = "ElasticMLP::forward";
  if (!returns(in, call, workspace, [&] { mlp->forward(executor(), width, y, ConstMatrixView<T>(x), workspace); })) return;
  require_accepted(in, call, MlpWidths::contains(width) && width <= mlp->intermediate(), "the width is not in its set");
  Expected expected;
  auto& out = expected.tensor<T>("output y", tolerance<T>());
  const MLPWeights<T> w = before(mlp->weights_at(width));
  const ConstMatrixView<T> x0 = arena().before(x);
  for (index_t t = 0; t < tokens; ++t) {
    const std::vector<double> ref = reference_mlp(w, x0.row(t), width);
    for (index_t c = 0; c < hidden; ++c) out.add(&y(t, c), ref[static_cast<std::size_t>(c)]);
  }
  check(in, call, expected, workspace);
}

// `count` distinct indices in [0, n) (a prefix of a permutation the input
// draws), now and then one out of range.
std::vector<int> decode_distinct_rows(Input& in, int count, int n) {
  std::vector<int> rows(static_cast<std::size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  for (int i = 0; i < count && i < n; ++i) std::swap(rows[static_cast<std::size_t>(i)], rows[static_cast<std::size_t>(in.pick("row", i, n - 1))]);
  rows.resize(static_cast<std::size_t>(std::clamp(count, 0, n)));
  if (!rows.empty() && in.stray("row index")) {
    const int outside[] = {-1, n, n + 1, INT_MAX, INT_MIN};
    rows[static_cast<std::size_t>(in.pick("at", 0, static_cast<int>(rows.size()) - 1))] = in.pick_of("to", outside);
  }
  return rows;
}

template <class T>
void fuzz_mlp_add_to_rows(Input& in) {
  const MLPWeights<T> weights = add_mlp_weights<T>(in);
  const index_t hidden = weights.gate.cols();
  const int tokens = in.pick("tokens", 0, 32);
  const MatrixView<T> x = add_matrix<T>("input x", tokens, hidden, decode_stride<T>(in, "x stride", hidden));
  const index_t residual_rows = in.stray("residual rows") ? tokens + 1 : tokens;
  const MatrixView<T> residual_home =
      add_matrix<T>("residual", residual_rows, hidden, decode_stride<T>(in, "residual stride", hidden), 0.25f);
  const int rows = in.stray("rows") ? in.edge_int("rows") : in.pick("rows", 0, tokens);
  const std::vector<int> indices = decode_distinct_rows(in, rows, tokens);
  const int* index_data = add_ints("row indices", indices);
  const auto mlp = attempt(in, "ElasticMLP", [&] { return ElasticMLP<T, MlpWidths>(weights); });
  if (!mlp) return;
  const int width = decode_width(in, "width", MlpWidths::values);
  const Workspace workspace = decode_workspace(
      in, attempt(in, "ElasticMLP::add_to_rows_workspace_bytes", [&] { return mlp->add_to_rows_workspace_bytes(executor(), rows); }));
  const MatrixView<T> residual = place(in, "residual", residual_home);

  constexpr auto call = "ElasticMLP::add_to_rows";
  if (!returns(in, call, workspace, [&] {
        mlp->add_to_rows(executor(), width, residual, ConstMatrixView<T>(x), index_data, rows, workspace);
      }))
    return;
  require_accepted(in, call, MlpWidths::contains(width) && width <= mlp->intermediate(), "the width is not in its set");
  require_accepted(in, call, rows >= 0 && rows <= tokens, "the row count is outside the batch");
  for (int i = 0; i < rows; ++i)
    require_accepted(in, call, arena().before(index_data)[i] >= 0 && arena().before(index_data)[i] < tokens, "a row index is outside the batch");
  Expected expected;
  auto& out = expected.tensor<T>("residual", tolerance<T>());
  const MLPWeights<T> w = before(mlp->weights_at(width));
  const ConstMatrixView<T> x0 = arena().before(x), residual0 = arena().before(residual);
  for (int i = 0; i < rows; ++i) {
    const int t = arena().before(index_data)[i];
    const std::vector<double> ref = reference_mlp(w, x0.row(t), width);
    for (index_t c = 0; c < hidden; ++c) out.add(&residual(t, c), at(residual0, t, c) + ref[static_cast<std::size_t>(c)]);
  }
  check(in, call, expected, workspace);
}

using LinearOutWidths = Widths<8, 16, 24, 32>;
using LinearInWidths = Widths<16, 32, 48, 64>;

template <class T>
void fuzz_linear(Input& in) {
  const index_t out_features = in.stray("out features") ? in.pick_of("out features", {24, 36}) : in.pick_of("out features", {32, 40});
  const index_t in_features = in.stray("in features") ? in.pick_of("in features", {60, 68}) : in.pick_of("in features", {64, 72});
  const MatrixView<T> weight = add_matrix<T>("weight", out_features, in_features, decode_stride<T>(in, "weight stride", in_features),
                                             1.0f / std::sqrt(static_cast<float>(in_features)));
  const int tokens = in.pick("tokens", 0, 32);
  const int out_width = decode_width(in, "out width", LinearOutWidths::values);
  const int in_width = decode_width(in, "in width", LinearInWidths::values);
  const index_t x_cols = cols_for(in_width), y_cols = cols_for(out_width);
  const MatrixView<T> x = add_matrix<T>("input x", tokens, x_cols, decode_stride<T>(in, "x stride", x_cols));
  const MatrixView<T> y_home = add_matrix<T>("output y", tokens, y_cols, decode_stride<T>(in, "y stride", y_cols));
  const auto layer = attempt(in, "ElasticLinear", [&] { return ElasticLinear<T, LinearOutWidths, LinearInWidths>(weight); });
  if (!layer) return;
  const Workspace workspace =
      decode_workspace(in, attempt(in, "ElasticLinear::workspace_bytes", [&] { return layer->workspace_bytes(executor(), tokens); }));
  const MatrixView<T> y = place(in, "output y", y_home);

  constexpr auto call = "ElasticLinear::forward";
  if (!returns(in, call, workspace, [&] { layer->forward(executor(), out_width, in_width, y, ConstMatrixView<T>(x), workspace); }))
    return;
  require_accepted(in, call, LinearOutWidths::contains(out_width) && LinearInWidths::contains(in_width),
                   "a width is not in its set");
  Expected expected;
  auto& out = expected.tensor<T>("output y", tolerance<T>());
  const ConstMatrixView<T> w = arena().before(layer->weight_at(out_width, in_width)), x0 = arena().before(x);
  for (index_t t = 0; t < tokens; ++t) {
    const std::vector<double> ref = reference_rows_dot(w, row_of(x0, t).data());
    for (index_t o = 0; o < out_width; ++o) out.add(&y(t, o), ref[static_cast<std::size_t>(o)]);
  }
  check(in, call, expected, workspace);
}

// ---------------------------------------------------------------------------
// Routing

// A route rule for `choices` choices and `tokens` tokens: argmax, a skip
// threshold (infinite ones included; now and then NaN), or top-k capacity;
// strays break its fields.
RouteRule decode_rule(Input& in, int choices, int tokens) {
  RouteRule rule;
  switch (in.pick("rule", 0, 2)) {
    case 0: rule = RouteRule::argmax(); break;
    case 1: {
      const int skip = in.stray("skip choice") ? in.edge_int("skip choice") : in.pick("skip choice", 0, choices - 1);
      const float threshold = in.stray("threshold") ? kNaN : in.pick_of("threshold", {0.0f, 0.25f, -0.5f, kInf, -kInf});
      rule = RouteRule::skip_above(skip, threshold);
      break;
    }
    default: {
      const int target = in.pick("target", 0, choices - 1);
      int fallback = choices > 1 ? (target + in.pick("fallback step", 1, choices - 1)) % choices : target;
      if (in.stray("fallback")) fallback = in.pick("fallback", 0, 1) == 0 ? target : in.edge_int("fallback");
      const int capacity = in.stray("capacity") ? in.edge_int("capacity") : in.pick("capacity", 0, tokens);
      rule = RouteRule::top_k(target, fallback, capacity);
      break;
    }
  }
  if (in.stray("rule mode")) rule.mode = static_cast<RouteRule::Mode>(in.pick_of("mode", {3, -1}));
  return rule;
}

// The choices a valid rule makes from logits [tokens x choices], as
// core/route_plan.hpp defines them.
template <class T>
std::vector<int> reference_routes(const ConstMatrixView<T>& logits, const RouteRule& rule) {
  const index_t tokens = logits.rows();
  const int choices = static_cast<int>(logits.cols());
  auto argmax = [&](index_t t, int excluded) {
    int best = -1;
    for (int c = 0; c < choices; ++c)
      if (c != excluded && (best < 0 || at(logits, t, c) > at(logits, t, best))) best = c;
    return best;
  };
  std::vector<int> routes(static_cast<std::size_t>(tokens));
  if (rule.mode == RouteRule::Mode::capacity) {
    std::vector<int> order(static_cast<std::size_t>(tokens));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return at(logits, a, rule.target) > at(logits, b, rule.target); });
    std::fill(routes.begin(), routes.end(), rule.fallback);
    for (int i = 0; i < rule.capacity; ++i) routes[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = rule.target;
    return routes;
  }
  for (index_t t = 0; t < tokens; ++t) {
    const bool skip = rule.mode == RouteRule::Mode::threshold && at(logits, t, rule.skip_choice) >= rule.threshold;
    routes[static_cast<std::size_t>(t)] =
        skip ? rule.skip_choice : argmax(t, rule.mode == RouteRule::Mode::threshold ? rule.skip_choice : -1);
  }
  return routes;
}

template <class T>
void fuzz_decide_routes(Input& in) {
  const int choices = in.stray("choices") ? in.pick_of("choices", {1, 9}) : in.pick("choices", 2, 6);
  const int tokens = in.pick("tokens", 0, 32);
  MatrixView<T> logits = add_matrix<T>("logits", tokens, choices, choices + in.pick("logits padding", 0, 3));
  if (in.pick("coarse logits", 0, 1) == 1)  // ties, and logits equal to the thresholds
    for (index_t t = 0; t < tokens; ++t)
      for (int c = 0; c < choices; ++c) logits(t, c) = from_float<T>(0.25f * static_cast<float>(in.pick("logit", -4, 4)));
  if (in.stray("tokens")) logits = claim_huge_rows(logits, in);  // must be narrowed to int, and rejected
  const RouteRule rule = decode_rule(in, choices, tokens);
  int* routes = arena().place(in, "choices output", arena().add<int>("choices output", static_cast<std::size_t>(tokens)),
                              static_cast<std::size_t>(tokens) * sizeof(int));

  constexpr auto call = "host::Executor::decide_routes";
  if (!returns(in, call, {}, [&] { executor().decide_routes(routes, ConstMatrixView<T>(logits), rule); })) return;
  require_accepted(in, call, logits.rows() == tokens, "the logits claim more rows than an int counts");
  Expected expected;
  auto& out = expected.tensor<int>("choices output", 0.0);
  const std::vector<int> ref = reference_routes(arena().before(logits), rule);
  for (int t = 0; t < tokens; ++t) out.add(routes + t, ref[static_cast<std::size_t>(t)]);
  check(in, call, expected, {});
}

template <class T>
void fuzz_plan_routes(Input& in) {
  const int choices = in.stray("choices") ? in.edge_int("choices") : in.pick("choices", 1, 6);
  const int tokens = in.pick("tokens", 0, 32);
  std::vector<int> picked(static_cast<std::size_t>(tokens));
  for (int& choice : picked) choice = in.stray("choice") ? in.edge_int("choice") : in.pick("choice", 0, std::max(choices, 1) - 1);
  const int* choice_data = add_ints("choices", picked);
  const auto bytes = attempt(in, "RoutePlan::bytes_required", [&] { return RoutePlan::bytes_required(tokens, choices); });
  if (!bytes) return;
  const std::size_t given = in.stray("plan memory") ? *bytes - std::min<std::size_t>(*bytes, 4) : *bytes;
  std::byte* memory = arena().place(in, "plan memory", arena().add<std::byte>("plan memory", given), given);
  const auto plan = attempt(in, "RoutePlan::carve", [&] { return RoutePlan::carve({memory, given}, tokens, choices); });
  if (!plan) return;

  constexpr auto call = "host::Executor::plan_routes";
  if (!returns(in, call, {}, [&] { executor().plan_routes(*plan, choice_data); })) return;
  for (int t = 0; t < tokens; ++t)
    require_accepted(in, call, arena().before(choice_data)[t] >= 0 && arena().before(choice_data)[t] < choices, "a choice is out of range");
  Expected expected;
  auto& counts = expected.tensor<int>("plan's counts", 0.0);
  auto& offsets = expected.tensor<int>("plan's offsets", 0.0);
  auto& permutation = expected.tensor<int>("plan's permutation", 0.0);
  const int* chosen = arena().before(choice_data);
  int offset = 0;
  for (int c = 0; c < choices; ++c) {
    offsets.add(plan->offsets + c, offset);
    const int group_start = offset;
    for (int t = 0; t < tokens; ++t)
      if (chosen[t] == c) permutation.add(plan->permutation + offset++, t);
    counts.add(plan->counts + c, offset - group_start);
  }
  offsets.add(plan->offsets + choices, offset);
  check(in, call, expected, {});
}

template <class T>
void fuzz_gather_rows(Input& in) {
  const index_t cols = decode_hidden(in);
  const int sources = in.stray("source rows") ? 0 : in.pick("source rows", 1, 32);
  const int rows = in.pick("rows", 0, 32);
  const MatrixView<T> source = add_matrix<T>("source", sources, cols, decode_stride<T>(in, "source stride", cols));
  const MatrixView<T> home = add_matrix<T>("destination", rows, cols, decode_stride<T>(in, "destination stride", cols));
  std::vector<int> indices(static_cast<std::size_t>(rows));
  for (int& index : indices) index = in.stray("index") ? in.edge_int("index") : in.pick("index", 0, sources - 1);
  const int* index_data = add_ints("row indices", indices);
  const MatrixView<T> destination = place(in, "destination", home);

  constexpr auto call = "host::Executor::gather_rows";
  if (!returns(in, call, {}, [&] { executor().gather_rows(destination, ConstMatrixView<T>(source), index_data); })) return;
  for (int i = 0; i < rows; ++i)
    require_accepted(in, call, arena().before(index_data)[i] >= 0 && arena().before(index_data)[i] < sources, "a row index is outside the source");
  Expected expected;
  auto& out = expected.tensor<T>("destination", 0.0);
  const ConstMatrixView<T> source0 = arena().before(source);
  for (int i = 0; i < rows; ++i)
    for (index_t c = 0; c < cols; ++c) out.add(&destination(i, c), at(source0, arena().before(index_data)[i], c));
  check(in, call, expected, {});
}

template <class T>
void fuzz_scatter_add_rows(Input& in) {
  const index_t cols = decode_hidden(in);
  const int rows = in.pick("destination rows", 0, 32);
  const int sources = in.pick("source rows", 0, rows);
  const MatrixView<T> home = add_matrix<T>("destination", rows, cols, decode_stride<T>(in, "destination stride", cols));
  const MatrixView<T> source = add_matrix<T>("source", sources, cols, decode_stride<T>(in, "source stride", cols));
  const int* index_data = add_ints("row indices", decode_distinct_rows(in, sources, rows));
  const MatrixView<T> destination = place(in, "destination", home);

  constexpr auto call = "host::Executor::scatter_add_rows";
  if (!returns(in, call, {}, [&] { executor().scatter_add_rows(destination, ConstMatrixView<T>(source), index_data); })) return;
  for (int i = 0; i < sources; ++i)
    require_accepted(in, call, arena().before(index_data)[i] >= 0 && arena().before(index_data)[i] < rows, "a row index is outside the destination");
  Expected expected;
  auto& out = expected.tensor<T>("destination", tolerance<T>());
  const ConstMatrixView<T> source0 = arena().before(source), destination0 = arena().before(destination);
  for (int i = 0; i < sources; ++i) {
    const int row = arena().before(index_data)[i];
    for (index_t c = 0; c < cols; ++c) out.add(&destination(row, c), double{at(destination0, row, c)} + at(source0, i, c));
  }
  check(in, call, expected, {});
}

// x * weight / sqrt(mean(x^2) + epsilon) of one row.
template <class T>
std::vector<double> reference_rms_norm(const ConstMatrixView<T>& x, index_t row, const ConstMatrixView<T>& weight,
                                       double epsilon) {
  double sum = 0.0;
  for (index_t c = 0; c < x.cols(); ++c) sum += double{at(x, row, c)} * at(x, row, c);
  const double scale = 1.0 / std::sqrt(sum / static_cast<double>(x.cols()) + epsilon);
  std::vector<double> y(static_cast<std::size_t>(x.cols()));
  for (index_t c = 0; c < x.cols(); ++c) y[static_cast<std::size_t>(c)] = at(x, row, c) * scale * at(weight, 0, c);
  return y;
}

template <class T>
void fuzz_rms_norm(Input& in) {
  const index_t cols = decode_hidden(in);
  const int rows = in.pick("rows", 0, 32);
  const MatrixView<T> x = add_matrix<T>("input x", rows, cols, decode_stride<T>(in, "x stride", cols));
  const index_t weight_cols = in.stray("weight cols") ? cols + 8 : cols;
  const MatrixView<T> weight = add_matrix<T>("weight", 1, weight_cols, weight_cols);
  const bool in_place = in.pick("in place", 0, 1) == 1;
  const MatrixView<T> y = in_place ? x : place(in, "output y", add_matrix<T>("output y", rows, cols, decode_stride<T>(in, "y stride", cols)));
  const float epsilon = in.stray("epsilon") ? in.pick_of("epsilon", {kNaN, -1e-5f, kInf}) : in.pick_of("epsilon", {1e-5f, 1e-6f, 0.0f});

  constexpr auto call = "host::Executor::rms_norm";
  if (!returns(in, call, {}, [&] { executor().rms_norm(y, ConstMatrixView<T>(x), ConstMatrixView<T>(weight), epsilon); })) return;
  Expected expected;
  auto& out = expected.tensor<T>("output y", tolerance<T>());
  for (index_t t = 0; t < rows; ++t) {
    const std::vector<double> ref = reference_rms_norm(arena().before(x), t, arena().before(weight), epsilon);
    for (index_t c = 0; c < cols; ++c) out.add(&y(t, c), ref[static_cast<std::size_t>(c)]);
  }
  check(in, call, expected, {});
}

// Router<T, kRouterChoices> weights in the arena: an optional RMSNorm, an
// optional hidden layer, the output layer.
constexpr int kRouterChoices = 4;

template <class T>
RouterWeights<T> add_router_weights(Input& in, index_t hidden) {
  RouterWeights<T> weights;
  if (in.pick("router norm", 0, 1) == 1) weights.norm = add_matrix<T>("router norm weight", 1, hidden, hidden);
  index_t features = hidden;
  if (in.pick("router hidden layer", 0, 1) == 1) {
    features = in.pick_of("router hidden rows", {8, 16});
    weights.hidden = add_matrix<T>("router hidden weight", features, hidden, hidden, 1.0f / std::sqrt(static_cast<float>(hidden)));
  }
  const index_t output_cols = in.stray("router output cols") ? features + 8 : features;
  weights.output = add_matrix<T>("router output weight", kRouterChoices, output_cols, output_cols,
                                 1.0f / std::sqrt(static_cast<float>(features)));
  return weights;
}

// The router's logits of every token, float64.
template <class T>
std::vector<double> reference_router_logits(const RouterWeights<T>& weights, const ConstMatrixView<T>& x, index_t t,
                                            double epsilon) {
  std::vector<double> features = weights.norm.empty() ? row_of(x, t) : reference_rms_norm(x, t, weights.norm, epsilon);
  if (!weights.hidden.empty()) {
    features = reference_rows_dot(weights.hidden, features.data());
    for (double& value : features) value = std::max(value, 0.0);
  }
  return reference_rows_dot(weights.output, features.data());
}

template <class T>
RouterWeights<T> before(const RouterWeights<T>& w) {
  return {arena().before(w.norm), arena().before(w.hidden), arena().before(w.output)};
}

// Routes x with a router (its logits against float64, then its route under a
// rule against the rule applied to those logits) into `routes`. Returns
// whether both calls returned.
template <class T>
bool route_with_router(Input& in, const ConstMatrixView<T>& x, int* routes_home) {
  using RouterT = Router<T, kRouterChoices>;
  const int tokens = static_cast<int>(x.rows());
  const RouterWeights<T> weights = add_router_weights<T>(in, x.cols());
  const float epsilon = in.stray("router epsilon") ? in.pick_of("router epsilon", {kNaN, -1.0f, kInf})
                                                   : in.pick_of("router epsilon", {1e-5f, 1e-6f});
  const MatrixView<T> logits_home =
      add_matrix<T>("logits output", tokens, kRouterChoices, RouterT::logits_stride);
  const RouteRule rule = decode_rule(in, kRouterChoices, tokens);
  const auto router = attempt(in, "Router", [&] { return RouterT(weights, epsilon); });
  if (!router) return false;
  const Workspace workspace = decode_workspace(
      in, attempt(in, "Router::route_workspace_bytes", [&] { return router->route_workspace_bytes(executor(), x.rows()); }));
  const MatrixView<T> logits = place(in, "logits output", logits_home);
  int* routes = arena().place(in, "choices output", routes_home, static_cast<std::size_t>(tokens) * sizeof(int));

  if (!returns(in, "Router::logits", workspace, [&] { router->logits(executor(), logits, x, workspace); })) return false;
  Expected logit_values;
  auto& out = logit_values.tensor<T>("logits output", tolerance<T>());
  for (index_t t = 0; t < tokens; ++t) {
    const std::vector<double> ref = reference_router_logits(before(weights), arena().before(x), t, epsilon);
    for (int c = 0; c < kRouterChoices; ++c) out.add(&logits(t, c), ref[static_cast<std::size_t>(c)]);
  }
  check(in, "Router::logits", logit_values, workspace);

  if (!returns(in, "Router::route", workspace, [&] { router->route(executor(), routes, x, rule, workspace); })) return false;
  Expected decisions;
  auto& chosen = decisions.tensor<int>("choices output", 0.0);
  const std::vector<int> ref = reference_routes(arena().before(logits), rule);
  for (int t = 0; t < tokens; ++t) chosen.add(routes + t, ref[static_cast<std::size_t>(t)]);
  check(in, "Router::route", decisions, workspace);
  if (routes != routes_home) std::copy_n(routes, tokens, routes_home);
  return true;
}

template <class T>
void fuzz_routed_mlp(Input& in) {
  const MLPWeights<T> weights = add_mlp_weights<T>(in);
  const index_t hidden = weights.gate.cols();
  const int tokens = in.pick("tokens", 0, 32);
  MatrixView<T> x = add_matrix<T>("input x", tokens, hidden, decode_stride<T>(in, "x stride", hidden));
  MatrixView<T> residual_home = add_matrix<T>("residual", tokens, hidden, decode_stride<T>(in, "residual stride", hidden), 0.25f);
  const int choices = in.stray("routed choices") ? in.pick("routed choices", 1, 6) : kRouterChoices;
  std::vector<int> widths(static_cast<std::size_t>(choices));
  for (int& width : widths)
    width = in.stray("choice width") ? in.pick_of("choice width", {12, 40, -8, INT_MAX}) : in.pick_of("choice width", {0, 8, 16, 24, 32});
  const auto mlp = attempt(in, "ElasticMLP", [&] { return ElasticMLP<T, MlpWidths>(weights); });
  if (!mlp) return;
  const auto routed = attempt(in, "RoutedMLP", [&] { return RoutedMLP<T, MlpWidths>(*mlp, widths); });
  if (!routed) return;

  int* routes = arena().add<int>("choices", static_cast<std::size_t>(tokens));
  if (in.pick("choices from", 0, 1) == 0) {
    if (!route_with_router(in, ConstMatrixView<T>(x), routes)) return;
  } else {
    for (int t = 0; t < tokens; ++t) routes[t] = in.stray("choice") ? in.edge_int("choice") : in.pick("choice", 0, choices - 1);
  }
  const int form = in.pick("forward", 0, 2);  // forward, forward_with_counts, forward_decode
  std::vector<int> counts(static_cast<std::size_t>(choices));
  for (int t = 0; t < tokens; ++t)
    if (routes[t] >= 0 && routes[t] < choices) ++counts[static_cast<std::size_t>(routes[t])];
  if (in.stray("counts")) {
    switch (in.pick("wrong counts", 0, 2)) {
      case 0: {
        int& count = counts[static_cast<std::size_t>(in.pick("count", 0, choices - 1))];
        count = in.pick_of("count to", {count + 1, count - 1, INT_MAX});
        break;
      }
      case 1: counts.push_back(0); break;
      default: std::rotate(counts.begin(), counts.begin() + 1, counts.end()); break;
    }
  }
  const int* count_data = add_ints("counts", counts);
  if (in.stray("tokens")) {
    x = claim_huge_rows(x, in);
    residual_home = {residual_home.data(), x.rows(), hidden, residual_home.row_stride()};
  }
  const Workspace workspace =
      decode_workspace(in, attempt(in, "RoutedMLP::workspace_bytes", [&] { return routed->workspace_bytes(executor(), x.rows()); }));
  const MatrixView<T> residual = x.rows() > tokens ? residual_home : place(in, "residual", residual_home);

  const char* call = form == 0 ? "RoutedMLP::forward" : form == 1 ? "RoutedMLP::forward_with_counts" : "RoutedMLP::forward_decode";
  if (!returns(in, call, workspace, [&] {
        const ConstMatrixView<T> input(x);
        if (form == 0) routed->forward(executor(), residual, input, routes, workspace);
        else if (form == 1) routed->forward_with_counts(executor(), residual, input, routes, {count_data, counts.size()}, workspace);
        else routed->forward_decode(executor(), residual, input, routes, workspace);
      }))
    return;
  require_accepted(in, call, x.rows() == tokens, "the input claims more rows than an int counts");
  for (int t = 0; t < tokens; ++t)
    require_accepted(in, call, arena().before(routes)[t] >= 0 && arena().before(routes)[t] < choices, "a choice is out of range");
  Expected expected;
  auto& out = expected.tensor<T>("residual", tolerance<T>());
  const ConstMatrixView<T> x0 = arena().before(x), residual0 = arena().before(residual);
  for (index_t t = 0; t < tokens; ++t) {
    const int width = routed->width_of(arena().before(routes)[t]);
    if (width == 0) continue;  // skipped: the residual row stays bit for bit
    const std::vector<double> ref = reference_mlp(before(mlp->weights_at(width)), x0.row(t), width);
    for (index_t c = 0; c < hidden; ++c) out.add(&residual(t, c), at(residual0, t, c) + ref[static_cast<std::size_t>(c)]);
  }
  check(in, call, expected, workspace);
}

// ---------------------------------------------------------------------------
// Attention

using HeadCounts = Widths<1, 2, 4>;
constexpr int kHeadDim = 64;
constexpr int kStoredHeads = 4;

// A ragged batch over a KV cache, as decoded: inside the contract every
// sequence has a slot of its own and fits its capacity, and the positions are
// the cache positions or explicit ones below 200; strays break one part
// (INT_MAX or negative lengths, slots and positions, a slot used twice,
// arrays of the wrong length).
struct DecodedBatch {
  std::vector<int> slots, cached, fresh, positions;
  int cache_slots = 1, capacity = 1;
  int tokens = 0;        // rows of the activations
  int max_position = 0;  // the largest position before any stray
};

DecodedBatch decode_batch(Input& in) {
  DecodedBatch b;
  b.cache_slots = in.pick("cache slots", 1, 3);
  const int sequences = in.pick("sequences", 1, b.cache_slots);
  std::vector<int> free_slots(static_cast<std::size_t>(b.cache_slots));
  std::iota(free_slots.begin(), free_slots.end(), 0);
  for (int s = 0; s < sequences; ++s) {
    const auto slot = static_cast<std::size_t>(s);
    std::swap(free_slots[slot], free_slots[static_cast<std::size_t>(in.pick("slot", s, b.cache_slots - 1))]);
    b.slots.push_back(free_slots[slot]);
    b.fresh.push_back(in.pick("new", 0, 8));
    b.cached.push_back(in.pick("cached", 0, 16));
    b.tokens += b.fresh.back();
    b.capacity = std::max(b.capacity, b.cached.back() + b.fresh.back());
  }
  b.capacity += in.pick("spare capacity", 0, 3);
  if (in.pick("explicit positions", 0, 1) == 1)
    for (int t = 0; t < b.tokens; ++t) b.positions.push_back(in.pick("position", 0, 199));
  std::vector<int> positions = b.positions;  // every token's, explicit or not
  if (positions.empty())
    for (int s = 0; s < sequences; ++s)
      for (int j = 0; j < b.fresh[static_cast<std::size_t>(s)]; ++j) positions.push_back(b.cached[static_cast<std::size_t>(s)] + j);
  if (!positions.empty()) b.max_position = *std::max_element(positions.begin(), positions.end());

  const auto any_sequence = [&] { return static_cast<std::size_t>(in.pick("sequence", 0, sequences - 1)); };
  if (!positions.empty() && in.stray("position")) {
    b.positions = positions;
    b.positions[static_cast<std::size_t>(in.pick("token", 0, b.tokens - 1))] = in.edge_int("position");
  }
  if (in.stray("positions count")) b.positions.push_back(0);
  if (in.stray("cached length")) b.cached[any_sequence()] = in.edge_int("cached");
  if (in.stray("new length")) b.fresh[any_sequence()] = in.edge_int("new");
  if (in.stray("cache slot")) b.slots[any_sequence()] = in.pick("duplicate", 0, 1) == 1 ? b.slots[0] : in.edge_int("slot");
  if (in.stray("lengths count")) (in.pick("shorter", 0, 1) == 0 ? b.cached : b.slots).pop_back();
  return b;
}

// Why a batch breaks the contract of core/attention_batch.hpp for this cache
// and these activations, if it does.
std::optional<std::string_view> batch_violation(const DecodedBatch& b, const KVCacheShape& shape, index_t rows,
                                                int max_positions) {
  const std::size_t sequences = b.fresh.size();
  if (b.slots.size() != sequences || b.cached.size() != sequences) return "its arrays have different lengths";
  std::vector<bool> taken(static_cast<std::size_t>(std::max(shape.slots, 0)));
  index_t total = 0;
  for (std::size_t s = 0; s < sequences; ++s) {
    const int slot = b.slots[s];
    if (slot < 0 || slot >= shape.slots || taken[static_cast<std::size_t>(slot)]) return "a slot is outside the cache or taken twice";
    taken[static_cast<std::size_t>(slot)] = true;
    if (b.cached[s] < 0 || b.fresh[s] < 0 || index_t{b.cached[s]} + b.fresh[s] > shape.capacity)
      return "a sequence does not fit its slot";
    total += b.fresh[s];
  }
  if (total != rows) return "the new lengths do not add up to the activations' rows";
  if (!b.positions.empty() && static_cast<index_t>(b.positions.size()) != total) return "there is not one position per token";
  int first = 0;
  for (std::size_t s = 0; s < sequences; ++s) {
    for (int j = 0; j < b.fresh[s]; ++j) {
      const index_t position = b.positions.empty() ? index_t{b.cached[s]} + j : b.positions[static_cast<std::size_t>(first + j)];
      if (position < 0 || position >= max_positions) return "a position is outside [0, max_positions)";
    }
    first += b.fresh[s];
  }
  return std::nullopt;
}

// RoPE: valid settings inside the contract (Llama 3 scaling with a short
// original context too, so every frequency band is used); strays give NaN,
// zero, negative or infinite parameters, or a bad layout.
RopeConfig decode_rope(Input& in, int max_position) {
  RopeConfig rope;
  rope.theta = in.stray("theta") ? in.pick_of("theta", {kNaN, 0.0f, -10000.0f, kInf}) : in.pick_of("theta", {10000.0f, 500000.0f});
  rope.layout = static_cast<RopeLayout>(in.stray("layout") ? in.pick_of("layout", {2, -1}) : in.pick("layout", 0, 1));
  rope.llama3_scaling = in.pick("llama3 scaling", 0, 1) == 1;
  if (rope.llama3_scaling) {
    rope.llama3.original_max_positions = in.pick_of("original positions", {32, 8192});
    if (in.stray("llama3")) {
      switch (in.pick("llama3 field", 0, 2)) {
        case 0: rope.llama3.factor = in.pick_of("factor", {kNaN, 0.0f, kInf}); break;
        case 1: rope.llama3.high_freq_factor = in.pick_of("high freq factor", {1.0f, kNaN}); break;
        default: rope.llama3.original_max_positions = in.pick_of("original positions", {0, -1}); break;
      }
    }
  }
  rope.max_positions = in.stray("max positions") ? in.edge_int("max positions") : max_position + 1 + in.pick("spare positions", 0, 32);
  return rope;
}

// Attention weights in the arena for a config (any head counts: the shapes
// follow them, clamped to what can be allocated).
template <class T>
AttentionWeights<T> add_attention_weights(const AttentionConfig& config, index_t hidden) {
  const index_t q_rows = index_t{std::clamp(config.heads, 0, 8)} * kHeadDim;
  const index_t kv_rows = index_t{std::clamp(config.kv_heads, 0, 8)} * kHeadDim;
  const float in_scale = 1.0f / std::sqrt(static_cast<float>(hidden));
  return {add_matrix<T>("q weight", q_rows, hidden, hidden, in_scale), add_matrix<T>("k weight", kv_rows, hidden, hidden, in_scale),
          add_matrix<T>("v weight", kv_rows, hidden, hidden, in_scale),
          add_matrix<T>("o weight", hidden, q_rows, std::max<index_t>(q_rows, 8),
                        1.0f / std::sqrt(static_cast<float>(std::max<index_t>(q_rows, 1))))};
}

template <class T>
AttentionWeights<T> before(const AttentionWeights<T>& w) {
  return {arena().before(w.q), arena().before(w.k), arena().before(w.v), arena().before(w.o)};
}

// float64 attention of one call over the first `heads` query heads of the
// stored weights: in each sequence the tokens that reach the cache (`writes`)
// append rope(k) and v after its cached positions, and each token with an
// output (which reaches the cache too) attends causally over the cache up to
// itself. Adds the expected cache entries to `expected`; returns the output
// rows (empty for a token without one).
template <class T>
std::vector<std::vector<double>> reference_attention(const AttentionWeights<T>& w, const AttentionConfig& config, int heads,
                                                     const ConstMatrixView<T>& x, const KVCacheView<T>& cache,
                                                     const DecodedBatch& batch, const std::vector<bool>& writes,
                                                     const std::vector<bool>& outputs, Expected& expected) {
  constexpr int D = kHeadDim;
  const int group = config.heads / config.kv_heads;
  const int kv_heads = (heads - 1) / group + 1;
  const double scale = config.scale != 0.0f ? config.scale : 1.0 / std::sqrt(double{D});
  const ConstMatrixView<T> wq = w.q.first_rows(index_t{heads} * D), wk = w.k.first_rows(index_t{kv_heads} * D),
                           wv = w.v.first_rows(index_t{kv_heads} * D), wo = w.o.first_cols(index_t{heads} * D);
  auto& keys = expected.tensor<T>("KV cache keys", tolerance<T>());
  auto& values = expected.tensor<T>("KV cache values", tolerance<T>());
  const T* keys0 = arena().before(cache.keys());
  const T* values0 = arena().before(cache.values());
  const KVCacheShape& shape = cache.shape();
  auto offset = [&](int slot, int head, int position) {  // [slot][kv_head][position][head_dim]
    return ((static_cast<std::size_t>(slot) * static_cast<std::size_t>(shape.kv_heads) + static_cast<std::size_t>(head)) *
                static_cast<std::size_t>(shape.capacity) +
            static_cast<std::size_t>(position)) *
           D;
  };
  std::vector<std::vector<double>> y(static_cast<std::size_t>(x.rows()));
  int first = 0;
  for (std::size_t s = 0; s < batch.fresh.size(); ++s) {
    const int slot = batch.slots[s], cached = batch.cached[s];
    std::vector<std::vector<double>> new_keys, new_values;  // per token written: [kv_heads * D]
    for (int j = 0; j < batch.fresh[s]; ++j) {
      const auto t = static_cast<std::size_t>(first + j);
      const int position = batch.positions.empty() ? cached + j : batch.positions[t];
      const std::vector<double> xt = row_of(x, first + j);
      if (writes[t]) {
        std::vector<double> k = reference_rows_dot(wk, xt.data());
        const std::vector<double> v = reference_rows_dot(wv, xt.data());
        const int cache_position = cached + static_cast<int>(new_keys.size());
        for (int g = 0; g < kv_heads; ++g) {
          test::reference_rope(&k[static_cast<std::size_t>(g * D)], D, position, config.rope);
          for (int d = 0; d < D; ++d) {
            const std::size_t element = offset(slot, g, cache_position) + static_cast<std::size_t>(d);
            keys.add(cache.keys() + element, k[static_cast<std::size_t>(g * D + d)]);
            values.add(cache.values() + element, v[static_cast<std::size_t>(g * D + d)]);
          }
        }
        new_keys.push_back(std::move(k));
        new_values.push_back(v);
      }
      if (!outputs[t]) continue;
      std::vector<double> q = reference_rows_dot(wq, xt.data());
      const int visible = cached + static_cast<int>(new_keys.size());
      std::vector<double> attended(static_cast<std::size_t>(heads * D)), scores(static_cast<std::size_t>(visible));
      for (int h = 0; h < heads; ++h) {
        double* query = &q[static_cast<std::size_t>(h * D)];
        test::reference_rope(query, D, position, config.rope);
        const int g = h / group;
        auto cached_entry = [&](const T* tensor, const std::vector<std::vector<double>>& fresh, int p, int d) -> double {
          return p < cached ? double{to_float(tensor[offset(slot, g, p) + static_cast<std::size_t>(d)])}
                            : fresh[static_cast<std::size_t>(p - cached)][static_cast<std::size_t>(g * D + d)];
        };
        double max_score = -INFINITY;
        for (int p = 0; p < visible; ++p) {
          double dot = 0.0;
          for (int d = 0; d < D; ++d) dot += query[d] * cached_entry(keys0, new_keys, p, d);
          scores[static_cast<std::size_t>(p)] = dot * scale;
          max_score = std::max(max_score, dot * scale);
        }
        double sum = 0.0;
        for (double& score : scores) sum += (score = std::exp(score - max_score));
        for (int p = 0; p < visible; ++p)
          for (int d = 0; d < D; ++d)
            attended[static_cast<std::size_t>(h * D + d)] +=
                scores[static_cast<std::size_t>(p)] / sum * cached_entry(values0, new_values, p, d);
      }
      y[t] = reference_rows_dot(wo, attended.data());
    }
    first += batch.fresh[s];
  }
  return y;
}

// ElasticAttention::forward, or SkippableAttention::forward under either KV
// policy, over a decoded batch.
template <class T>
void fuzz_attention(Input& in, bool skippable) {
  AttentionConfig config;
  config.heads = in.stray("stored heads") ? in.pick_of("stored heads", {2, 3, 0}) : kStoredHeads;
  config.kv_heads = in.stray("kv heads") ? in.pick_of("kv heads", {0, 3, 8}) : in.pick_of("kv heads", {1, 2, 4});
  const index_t hidden = decode_hidden(in);
  const DecodedBatch batch = decode_batch(in);
  config.rope = decode_rope(in, batch.max_position);
  config.scale = in.stray("scale") ? in.pick_of("scale", {kNaN, -0.125f, kInf}) : in.pick_of("scale", {0.0f, 0.125f, 0.0625f});
  const AttentionWeights<T> weights = add_attention_weights<T>(config, hidden);
  const int tokens = batch.tokens;
  MatrixView<T> x = add_matrix<T>("input x", tokens, hidden, decode_stride<T>(in, "x stride", hidden));
  const bool in_place = !skippable && in.pick("in place", 0, 1) == 1;
  const std::string_view out_name = skippable ? "residual" : "output y";
  MatrixView<T> out_home = in_place ? x
                                    : add_matrix<T>(out_name, tokens, hidden, decode_stride<T>(in, "output stride", hidden),
                                                    skippable ? 0.25f : 1.0f);
  const int* slot_data = add_ints("cache slots", batch.slots);
  const int* cached_data = add_ints("cached lengths", batch.cached);
  const int* fresh_data = add_ints("new lengths", batch.fresh);
  const int* position_data = add_ints("positions", batch.positions);
  const AttentionBatch attention_batch{{slot_data, batch.slots.size()},
                                       {cached_data, batch.cached.size()},
                                       {fresh_data, batch.fresh.size()},
                                       {position_data, batch.positions.size()}};
  // SkippableAttention's own arguments.
  SkippedTokenKV policy = SkippedTokenKV::dropped;
  std::vector<int> skip;
  const int* skip_data = nullptr;
  std::size_t appended_count = 0;
  int* appended_home = nullptr;
  if (skippable) {
    policy = in.pick("policy", 0, 1) == 0 ? SkippedTokenKV::dropped : SkippedTokenKV::written;
    skip.resize(static_cast<std::size_t>(tokens));
    for (int& flag : skip) flag = in.stray("skip flag") ? in.pick_of("skip flag", {2, -1}) : in.pick("skip flag", 0, 1);
    if (in.stray("skip flags count")) skip.push_back(0);
    skip_data = add_ints("skip flags", skip);
    appended_count = batch.fresh.size() + (in.stray("appended count") ? 1 : 0);
    appended_home = arena().add<int>("appended lengths", appended_count);
  }

  KVCacheShape shape{batch.cache_slots, config.kv_heads, batch.capacity, kHeadDim};
  if (in.stray("cache shape")) (in.pick("which", 0, 1) == 0 ? shape.kv_heads : shape.head_dim) *= 2;
  const auto cache_bytes = attempt(in, "KVCacheShape::bytes_required", [&] { return shape.bytes_required<T>(); });
  if (!cache_bytes) return;
  std::byte* cache_home = reinterpret_cast<std::byte*>(arena().add<T>("KV cache", *cache_bytes / sizeof(T)));
  const auto attention =
      attempt(in, "ElasticAttention", [&] { return ElasticAttention<T, HeadCounts, kHeadDim>(weights, config); });
  if (!attention) return;
  const SkippableAttention<T, HeadCounts, kHeadDim> skip_layer(*attention, policy);
  const int heads = decode_width(in, "heads", HeadCounts::values);
  if (in.stray("tokens")) {
    x = claim_huge_rows(x, in);
    out_home = in_place ? x : MatrixView<T>(out_home.data(), x.rows(), hidden, out_home.row_stride());
  }
  const Workspace workspace = decode_workspace(in, attempt(in, "workspace_bytes", [&] {
    return skippable ? skip_layer.workspace_bytes(executor(), attention_batch, shape)
                     : attention->workspace_bytes(executor(), attention_batch, shape);
  }));
  const MatrixView<T> out = in_place || x.rows() > tokens ? out_home : place(in, out_name, out_home);
  std::byte* cache_memory = arena().place(in, "KV cache", cache_home, *cache_bytes);
  int* appended = arena().place(in, "appended lengths", appended_home, appended_count * sizeof(int));
  const auto cache = attempt(in, "KVCacheView", [&] { return KVCacheView<T>({cache_memory, *cache_bytes}, shape); });
  if (!cache) return;

  const char* call = skippable ? "SkippableAttention::forward" : "ElasticAttention::forward";
  if (!returns(in, call, workspace, [&] {
        if (skippable)
          skip_layer.forward(executor(), heads, out, ConstMatrixView<T>(x), *cache, attention_batch,
                             {skip_data, skip.size()}, {appended, appended_count}, workspace);
        else
          attention->forward(executor(), heads, out, ConstMatrixView<T>(x), *cache, attention_batch, workspace);
      }))
    return;
  require_accepted(in, call, x.rows() == tokens, "the input claims more rows than an int counts");
  require_accepted(in, call, HeadCounts::contains(heads), "the head count is not in its set");
  const auto violation = batch_violation(batch, shape, tokens, config.rope.max_positions);
  require_accepted(in, call, !violation, violation.value_or(""));
  require_accepted(in, call, skip.size() == static_cast<std::size_t>(skippable ? tokens : 0) &&
                                 appended_count == (skippable ? batch.fresh.size() : 0),
                   "the skip flags or appended lengths do not match the batch");

  // Which tokens reach the cache and which get an output.
  std::vector<bool> writes(static_cast<std::size_t>(tokens), true), outputs(static_cast<std::size_t>(tokens), true);
  Expected expected;
  if (skippable) {
    auto& lengths = expected.tensor<int>("appended lengths", 0.0);
    int first = 0;
    for (std::size_t s = 0; s < batch.fresh.size(); ++s) {
      int kept = 0;
      for (int j = 0; j < batch.fresh[s]; ++j) {
        const auto t = static_cast<std::size_t>(first + j);
        outputs[t] = arena().before(skip_data)[t] == 0;
        writes[t] = outputs[t] || policy == SkippedTokenKV::written;
        kept += outputs[t] ? 1 : 0;
      }
      lengths.add(appended + s, policy == SkippedTokenKV::dropped ? kept : batch.fresh[s]);
      first += batch.fresh[s];
    }
  }
  const ConstMatrixView<T> out0 = arena().before(out);
  const auto ref = reference_attention(before(weights), config, heads, arena().before(x), *cache, batch, writes, outputs, expected);
  auto& rows = expected.tensor<T>(out_name, tolerance<T>());
  for (index_t t = 0; t < tokens; ++t) {
    if (!outputs[static_cast<std::size_t>(t)]) continue;  // skipped: the residual row stays bit for bit
    for (index_t c = 0; c < hidden; ++c)
      rows.add(&out(t, c), (skippable ? double{at(out0, t, c)} : 0.0) + ref[static_cast<std::size_t>(t)][static_cast<std::size_t>(c)]);
  }
  check(in, call, expected, workspace);
}

template <class T>
void fuzz_elastic_attention(Input& in) {
  fuzz_attention<T>(in, false);
}

template <class T>
void fuzz_skippable_attention(Input& in) {
  fuzz_attention<T>(in, true);
}

// ---------------------------------------------------------------------------

template <class T>
constexpr void (*targets[])(Input&) = {
    fuzz_mlp_forward<T>, fuzz_mlp_add_to_rows<T>, fuzz_linear<T>,       fuzz_routed_mlp<T>,
    fuzz_decide_routes<T>, fuzz_plan_routes<T>,  fuzz_gather_rows<T>, fuzz_scatter_add_rows<T>,
    fuzz_rms_norm<T>,      fuzz_elastic_attention<T>, fuzz_skippable_attention<T>,
};

template <class T>
void fuzz_one(Input& in) {
  const auto target = targets<T>[in.pick("target", 0, static_cast<int>(std::size(targets<T>)) - 1)];
  arena().reset(static_cast<std::uint64_t>(in.pick("values seed", 0, 255)));
  target(in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  try {
    switch (in.pick("type", 0, 2)) {
      case 0: fuzz_one<float>(in); break;
      case 1: fuzz_one<half_t>(in); break;
      default: fuzz_one<bfloat16_t>(in); break;
    }
  } catch (const TooLarge&) {
    return -1;  // not worth keeping in the corpus
  }
  return 0;
}
