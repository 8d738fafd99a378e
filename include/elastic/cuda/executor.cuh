// The CUDA executor: the executor primitives on device memory, enqueued on an
// explicit stream.
//
// Decode (1-16 tokens) runs our row-dot kernels (row_dot_kernel.cuh: one
// token and float32 on CUDA cores, 2-16 tokens of 16-bit types on tensor
// cores), specialised on the token bucket; SwiGLU is fused into the gate/up
// pass. A compile-time reduction length (Extent) is checked, not compiled in. Prefill (more tokens) runs cuBLASLt on the
// strided width slices and the in-place SwiGLU epilogue. Scratch memory comes
// from the caller's workspace (device memory, sized by the *_workspace_bytes
// queries); the forward path never allocates device memory and never
// synchronises, so it can be captured in a CUDA graph once each GEMM shape
// has run once (the first call of a shape builds its cuBLASLt plan on the
// host). One executor serves one thread, on the device that was current when
// it was built.
//
// Attention uploads the batch description into the workspace (see
// cuda/attention_metadata.cuh: one copy from pinned memory), appends the new
// keys and values to the cache (kv_append_kernel.cuh), then runs
// flash-decoding when every sequence brings one token
// (attention_decode_kernel.cuh) and the tiled flash-attention kernel
// otherwise (attention_prefill_kernel.cuh), whose query tiles split their
// K/V ranges across blocks when they alone would leave SMs idle. The decode
// grid and the prefill split plan depend on the SM count, read once here.
//
// Decode attention also comes as plan + run, the form a CUDA graph captures:
//   plan = plan_decode_attention(out, q, k, v, cache, batch, params, max_context, workspace);
//   run_decode_attention(plan);       // append k, v; attend        (capturable)
//   advance_decode_attention(plan);   // cached lengths, positions += 1 (capturable)
// The plan step (host) checks everything attention() checks, sizes the grid
// for sequences of up to max_context positions and uploads the batch into
// the workspace; it is not captured. The run and advance steps only enqueue
// kernels whose arguments are fixed by the plan: the lengths, the split
// chunk and the split offsets are read from (and, by advance, written to)
// the workspace on the device. The capture contract:
//   - capture run (and advance, when the graph should move the sequences on)
//     on this executor's stream, after plan; replay on any stream in order;
//   - the plan's out, q, k, v, cache, params and workspace stay fixed: a
//     replay reads q, k, v from, and writes out to, the same memory, so new
//     tokens' activations are written there before each replay (by the
//     captured layers before it, or by copies outside the graph);
//   - every sequence sees at most max_context positions at any replay: with
//     one advance per replay, a sequence that saw `visible` positions at plan
//     time may be run max_context - visible + 1 times. Past that the advance
//     leaves it where it is, so further replays recompute (and overwrite) its
//     last position: nothing is written past the positions the plan checked;
//   - a new plan (lengths or slots set from the host) needs no new capture
//     when it has the same views, params, sequence count, max_context and
//     workspace as the captured one: it writes the same device fields the
//     graph reads, in stream order before the next replay.
// attention() on a decode batch is plan (with max_context = the batch's
// longest sequence) + run, so the two paths run the same kernels.
//
// Routing (route_kernels.cuh, row_kernels.cuh) has the host executor's
// signatures, checks and results; plans, choices and row indices are device
// memory, which the host cannot inspect without a synchronisation. So an
// invalid choice is caught on the device: plan_routes then leaves the plan
// untouched and records the token and its choice in a status word in its
// workspace, and read_route_counts (which synchronises the stream to return
// host values, the only routing call that does) throws the host executor's
// error. Read a plan's counts before its plan_routes workspace is reused.
// gather_rows, scatter_add_rows, gather_swiglu and linear_scatter_add skip
// rows whose index is out of range (the host throws instead): nothing is
// read or written outside the indexed matrix, though gather_swiglu above
// decode sizes writes an unspecified output row for such a token. Indices
// must come from a plan or be known to be valid. Every other routing call is
// asynchronous, and all but load_indices (a copy from pageable host memory)
// can be captured in a CUDA graph.
//
// convert widens a matrix to float32 (a 16-bit decoder's logits); it is
// asynchronous and can be captured too.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/attention_params.hpp"
#include "elastic/core/checks.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/routing_checks.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/cuda/attention_decode_kernel.cuh"
#include "elastic/cuda/attention_metadata.cuh"
#include "elastic/cuda/attention_prefill_kernel.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/gemm.cuh"
#include "elastic/cuda/kv_append_kernel.cuh"
#include "elastic/cuda/route_kernels.cuh"
#include "elastic/cuda/row_dot_kernel.cuh"
#include "elastic/cuda/row_kernels.cuh"
#include "elastic/cuda/swiglu_kernel.cuh"
#include "elastic/math/activation.hpp"
#include "elastic/math/online_softmax.hpp"

namespace elastic::cuda {

class Executor {
 public:
  static constexpr MemorySpace memory_space = MemorySpace::device;

  // Workspace cuBLASLt may use for one prefill GEMM (NVIDIA's recommendation
  // for Hopper).
  static constexpr std::size_t gemm_workspace_bytes = std::size_t{32} << 20;

  // Uses `handle` if given (the caller keeps ownership), else creates one.
  explicit Executor(cudaStream_t stream = nullptr, cublasLtHandle_t handle = nullptr)
      : stream_(stream), handle_(handle != nullptr ? handle : create_handle(), HandleDeleter{handle == nullptr}),
        gemm_(std::make_unique<GemmPlanCache>(handle_.get())),
        multiprocessors_(multiprocessor_count()) {}

  cudaStream_t stream() const { return stream_; }
  void set_stream(cudaStream_t stream) { stream_ = stream; }
  cublasLtHandle_t cublaslt() const { return handle_.get(); }
  int multiprocessors() const { return multiprocessors_; }

  static bool is_decode(index_t tokens) { return tokens <= decode_max_tokens; }

  template <ElementType T>
  std::size_t linear_workspace_bytes(index_t tokens, index_t /*out*/, index_t /*in*/) const {
    return is_decode(tokens) ? 0 : gemm_workspace_bytes;
  }

  template <ElementType T>
  std::size_t swiglu_workspace_bytes(index_t tokens, index_t out, index_t /*in*/) const {
    if (is_decode(tokens)) return 0;
    WorkspaceCursor cursor;
    carve_swiglu<T>(cursor, tokens, out);
    return cursor.bytes_used();
  }

  template <ElementType T, int StaticLength = dynamic_extent>
  void linear(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
              std::type_identity_t<ConstMatrixView<T>> w, Workspace workspace = {},
              Extent<StaticLength> = {}) {
    detail::check_linear(y, x, w, StaticLength);
    const index_t tokens = x.rows();
    check_workspace(workspace, linear_workspace_bytes<T>(tokens, w.rows(), w.cols()), "linear");
    if (y.empty()) return;
    if (is_decode(tokens)) {
      launch_row_dots<T, 1, false>(row_dot_params<T, 1>(y, x, {w}), math::Identity{}, multiprocessors_, stream_);
    } else {
      gemm_->run(y, x, w, workspace, stream_);
    }
  }

  template <ElementType T>
  void swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x,
              std::type_identity_t<ConstMatrixView<T>> gate, std::type_identity_t<ConstMatrixView<T>> up,
              Workspace workspace = {}) {
    detail::check_swiglu(h, x, gate, up);
    const index_t tokens = x.rows();
    check_workspace(workspace, swiglu_workspace_bytes<T>(tokens, gate.rows(), gate.cols()), "swiglu");
    if (h.empty()) return;
    if (is_decode(tokens)) {
      launch_row_dots<T, 2, false>(row_dot_params<T, 2>(h, x, {gate, up}), math::SwiGLU{}, multiprocessors_,
                                   stream_);
      return;
    }
    WorkspaceCursor cursor(workspace);
    const SwigluScratch<T> scratch = carve_swiglu<T>(cursor, tokens, gate.rows());
    gemm_->run(h, x, gate, scratch.gemm, stream_);
    gemm_->run(scratch.up, x, up, scratch.gemm, stream_);
    launch_swiglu_in_place(h, ConstMatrixView<T>(scratch.up), stream_);
  }

  // Workspace for attention over `batch` with `heads` query heads: the
  // uploaded batch description and the split partials (decode, and prefill
  // whose query tiles alone would leave the GPU idle). Grows
  // with heads, so a layer may size it for its full head count. The sizes
  // come from the batch's lengths, so the batch is validated against the
  // cache here too (positions are checked by the call).
  template <ElementType T>
  std::size_t attention_workspace_bytes(const AttentionBatch& batch, int heads, int head_dim,
                                        const KVCacheShape& cache) const {
    require(is_supported_head_dim(head_dim), "attention: head_dim must be 64 or 128, found ", head_dim);
    require(heads >= 0, "attention: the head count must be non-negative, found ", heads);
    batch.validate(cache, batch.tokens(), std::numeric_limits<int>::max());
    return attention_scratch_bytes<T>(batch, heads, head_dim);
  }

  // Workspace for a decode plan of `sequences` sequences with `heads` query
  // heads that see at most max_context positions each.
  std::size_t decode_attention_workspace_bytes(int sequences, int heads, int head_dim, int max_context) const {
    require(is_supported_head_dim(head_dim), "plan_decode_attention: head_dim must be 64 or 128, found ", head_dim);
    require(sequences >= 0 && heads >= 0 && max_context >= 0,
            "plan_decode_attention: sequences, heads and max_context must be non-negative, found ", sequences, ", ",
            heads, " and ", max_context);
    WorkspaceCursor cursor;
    carve_decode(cursor, sequences, heads, head_dim, max_context);
    return cursor.bytes_used();
  }

  // Rotates k and appends k, v to the cache, then causal attention of q over
  // the cache (see core/attention_params.hpp); the host executor's semantics.
  template <ElementType T, int HeadDim>
  void attention(MatrixView<T> out, std::type_identity_t<ConstMatrixView<T>> q,
                 std::type_identity_t<ConstMatrixView<T>> k, std::type_identity_t<ConstMatrixView<T>> v,
                 const KVCacheView<T>& cache, const AttentionBatch& batch, const AttentionParams<HeadDim>& params,
                 Workspace workspace = {}) {
    detail::check_attention(out, q, k, v, cache, batch, params);
    check_workspace(workspace, attention_scratch_bytes<T>(batch, params.heads, HeadDim), "attention");
    if (q.rows() == 0) return;
    if (batch.is_decode()) {
      run_decode_attention(make_decode_plan(out, q, k, v, cache, batch, params, longest_visible(batch), workspace));
      return;
    }
    const PrefillSplitPlan plan = plan_prefill_splits<T>(batch, params.heads, HeadDim, multiprocessors_);
    check_prefill_grid(plan);
    WorkspaceCursor cursor(workspace);
    const PrefillScratch scratch = carve_prefill<T>(cursor, batch, plan, HeadDim);
    const AttentionMetadata metadata = staging_.upload_prefill(scratch.metadata, batch, PrefillShape<T>::rows, plan,
                                                               stream_);
    const AttentionArgs<T, HeadDim> args = make_attention_args<T, HeadDim>(out, q, k, v, cache, params, metadata);
    launch_append_kv(args, stream_);
    launch_prefill_attention(args, plan.partial_slots > 0 ? scratch.partials : PrefillPartials{}, stream_);
  }

  // The plan step of a captured decode (see the contract at the top): checks
  // the call as attention() does, and that every sequence brings one token
  // and sees at most max_context positions (its token included, at most the
  // cache capacity) with positions that stay below params.max_positions for
  // all of them; then uploads the batch into `workspace`
  // (decode_attention_workspace_bytes) on the stream.
  template <ElementType T, int HeadDim>
  DecodeAttentionPlan<T, HeadDim> plan_decode_attention(MatrixView<T> out, std::type_identity_t<ConstMatrixView<T>> q,
                                                        std::type_identity_t<ConstMatrixView<T>> k,
                                                        std::type_identity_t<ConstMatrixView<T>> v,
                                                        const KVCacheView<T>& cache, const AttentionBatch& batch,
                                                        const AttentionParams<HeadDim>& params, int max_context,
                                                        Workspace workspace) {
    detail::check_attention(out, q, k, v, cache, batch, params);
    require(batch.sequences() > 0 && batch.is_decode(),
            "plan_decode_attention: the batch must bring exactly one new token per sequence, at least one sequence");
    require(max_context >= longest_visible(batch) && max_context <= cache.shape().capacity,
            "plan_decode_attention: max_context must lie between the longest sequence's ", longest_visible(batch),
            " positions and the cache capacity ", cache.shape().capacity, ", found ", max_context);
    for (std::size_t s = 0; s < batch.sequences(); ++s) {
      const long long last = static_cast<long long>(batch.position(s, static_cast<int>(s), 0)) + max_context -
                             (batch.cached_lengths[s] + 1);
      require(last < params.max_positions, "plan_decode_attention: sequence ", s, " would reach position ", last,
              " by max_context ", max_context, ", expected positions below ", params.max_positions);
    }
    check_workspace(workspace,
                    decode_attention_workspace_bytes(static_cast<int>(batch.sequences()), params.heads, HeadDim,
                                                     max_context),
                    "plan_decode_attention");
    return make_decode_plan(out, q, k, v, cache, batch, params, max_context, workspace);
  }

  // The run step: appends the new keys and values and attends, reading the
  // lengths from the plan's workspace. Capturable; no host checks.
  template <class T, int HeadDim>
  void run_decode_attention(const DecodeAttentionPlan<T, HeadDim>& plan) {
    launch_append_kv(plan.args, stream_);
    launch_decode_attention(plan.args, plan.grid, plan.fields, plan.partials, stream_);
  }

  // The update step: every sequence of the plan one position longer (the
  // token run_decode_attention appended is cached; the next one follows it).
  // Capturable.
  template <class T, int HeadDim>
  void advance_decode_attention(const DecodeAttentionPlan<T, HeadDim>& plan) {
    launch_advance_decode_lengths(plan.fields, plan.args.batch.sequences, plan.max_context, stream_);
  }

  // Routing primitives (see core/routing_checks.hpp and the notes above).
  // decide_routes needs workspace only for the capacity rule on more than
  // decide_block_max_tokens tokens; the size query covers every rule.
  template <ElementType T>
  std::size_t decide_routes_workspace_bytes(index_t tokens, int /*choices*/) const {
    WorkspaceCursor cursor;
    carve_capacity(cursor, route_tokens(tokens, "decide_routes"));
    return cursor.bytes_used();
  }

  // Always at least the status word read_route_counts checks.
  std::size_t plan_routes_workspace_bytes(int tokens, int choices) const {
    WorkspaceCursor cursor;
    carve_plan(cursor, tokens, choices);
    return cursor.bytes_used();
  }

  template <ElementType T>
  void decide_routes(int* choices, ConstMatrixView<T> logits, const RouteRule& rule, Workspace workspace = {}) {
    detail::check_decide_routes(choices, logits, rule);
    const int tokens = route_tokens(logits.rows(), "decide_routes");
    const bool capacity = rule.mode == RouteRule::Mode::capacity;
    check_workspace(workspace, capacity ? decide_routes_workspace_bytes<T>(tokens, static_cast<int>(logits.cols())) : 0,
                    "decide_routes");
    if (tokens == 0) return;
    if (!capacity) {
      launch_choose_routes(choices, logits, rule, stream_);
      return;
    }
    WorkspaceCursor cursor(workspace);
    launch_capacity_routes(choices, logits, rule, carve_capacity(cursor, tokens), stream_);
  }

  // Counts, offsets and the stable permutation of `choices` into `plan`, or,
  // for a choice outside [0, plan.choices), nothing but the status word that
  // read_route_counts turns into an error.
  void plan_routes(const RoutePlan& plan, const int* choices, Workspace workspace = {}) {
    detail::check_plan_routes(plan, choices);
    check_workspace(workspace, plan_routes_workspace_bytes(plan.tokens, plan.choices), "plan_routes");
    WorkspaceCursor cursor(workspace);
    const PlanScratch scratch = carve_plan(cursor, plan.tokens, plan.choices);
    launch_plan_routes(plan, choices, scratch, route_status_.record(plan, scratch.status), stream_);
  }

  // Copies the plan's counts to the host. Synchronises the stream: first on
  // the status word of the plan_routes call that built the plan (one of this
  // executor's last RouteStatusLog::capacity calls, its workspace not yet
  // reused), which must report valid choices, then on the counts.
  void read_route_counts(const RoutePlan& plan, std::span<int> counts) const {
    require(counts.size() == static_cast<std::size_t>(plan.choices), "read_route_counts: ", counts.size(),
            " entries given for ", plan.choices, " choices");
    const RouteStatusLog::Entry* entry = route_status_.find(plan);
    require(entry != nullptr, "read_route_counts: the plan was not built by any of this executor's last ",
            RouteStatusLog::capacity, " plan_routes calls");
    RouteStatus status{};
    ELASTIC_CUDA_CHECK(cudaMemcpyAsync(&status, entry->status, sizeof status, cudaMemcpyDeviceToHost, stream_));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream_));
    check_route_status(status, route_status_, entry->tag, plan, entry->counts_caller);
    ELASTIC_CUDA_CHECK(
        cudaMemcpyAsync(counts.data(), plan.counts, counts.size_bytes(), cudaMemcpyDeviceToHost, stream_));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // The group sizes a caller claims for a plan, compared on the device with
  // the plan plan_routes built (no synchronisation): a mismatch is recorded
  // in the status word of that plan_routes call (`plan_workspace` is its
  // workspace) and read_route_counts throws it, naming `caller`. Captures in
  // a CUDA graph (the sizes travel as kernel arguments).
  void check_route_counts(const RoutePlan& plan, std::span<const int> counts, Workspace plan_workspace,
                          std::string_view caller) {
    detail::check_claimed_counts(plan, counts, caller);
    check_workspace(plan_workspace, plan_routes_workspace_bytes(plan.tokens, plan.choices), "check_route_counts");
    WorkspaceCursor cursor(plan_workspace);
    const PlanScratch scratch = carve_plan(cursor, plan.tokens, plan.choices);
    route_status_.note_counts_check(plan, caller);
    launch_check_route_counts(plan, counts, scratch.status, stream_);
  }

  // Copies host indices into device memory, in stream order. The source is
  // pageable memory: the call returns once the driver has staged the values
  // (so `indices` may change at once) and may block the host briefly; it is
  // not meant for graph capture (a replay would re-read the host memory).
  void load_indices(int* destination, std::span<const int> indices) {
    detail::check_load_indices(destination, indices);
    if (indices.empty()) return;
    ELASTIC_CUDA_CHECK(
        cudaMemcpyAsync(destination, indices.data(), indices.size_bytes(), cudaMemcpyHostToDevice, stream_));
  }

  template <ElementType T>
  void gather_rows(MatrixView<T> dst, std::type_identity_t<ConstMatrixView<T>> src, const int* indices) {
    detail::check_rows_op(dst, src, indices, dst.rows(), "gather_rows");
    launch_gather_rows(dst, src, indices, stream_);
  }

  template <ElementType T>
  void scatter_add_rows(MatrixView<T> dst, std::type_identity_t<ConstMatrixView<T>> src, const int* indices) {
    detail::check_rows_op(dst, src, indices, src.rows(), "scatter_add_rows");
    launch_scatter_add_rows(dst, src, indices, stream_);
  }

  // The routed halves of an MLP: at decode sizes the row-dot kernels read and
  // write the rows by index; above, the group is gathered into the workspace
  // (or computed there and scatter-added) around the cuBLASLt GEMMs.
  template <ElementType T>
  std::size_t gather_swiglu_workspace_bytes(index_t tokens, index_t out, index_t in) const {
    if (is_decode(tokens)) return 0;
    WorkspaceCursor cursor;
    carve_gather_swiglu<T>(cursor, tokens, out, in);
    return cursor.bytes_used();
  }

  template <ElementType T>
  std::size_t linear_scatter_add_workspace_bytes(index_t tokens, index_t out, index_t /*in*/) const {
    if (is_decode(tokens)) return 0;
    WorkspaceCursor cursor;
    carve_linear_scatter_add<T>(cursor, tokens, out);
    return cursor.bytes_used();
  }

  template <ElementType T>
  void gather_swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x, const int* indices,
                     std::type_identity_t<ConstMatrixView<T>> gate, std::type_identity_t<ConstMatrixView<T>> up,
                     Workspace workspace = {}) {
    detail::check_gather_swiglu(h, x, indices, gate, up);
    const index_t tokens = h.rows();
    check_workspace(workspace, gather_swiglu_workspace_bytes<T>(tokens, gate.rows(), gate.cols()), "gather_swiglu");
    if (h.empty() || x.rows() == 0) return;  // no row to read: every index is out of range
    if (is_decode(tokens)) {
      launch_gathered_swiglu(h, x, indices, gate, up, nullptr);
      return;
    }
    WorkspaceCursor cursor(workspace);
    const IndexedScratch<T> scratch = carve_gather_swiglu<T>(cursor, tokens, gate.rows(), gate.cols());
    launch_gather_rows(scratch.rows, x, indices, stream_);
    swiglu(h, ConstMatrixView<T>(scratch.rows), gate, up, scratch.rest);
  }

  // The indices must be distinct (as a route plan's are): two tokens added
  // into the same row race.
  template <ElementType T, int StaticLength = dynamic_extent>
  void linear_scatter_add(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
                          std::type_identity_t<ConstMatrixView<T>> w, const int* indices, Workspace workspace = {},
                          Extent<StaticLength> = {}) {
    detail::check_linear_scatter_add(y, x, w, indices, StaticLength);
    const index_t tokens = x.rows();
    check_workspace(workspace, linear_scatter_add_workspace_bytes<T>(tokens, w.rows(), w.cols()),
                    "linear_scatter_add");
    if (tokens == 0 || y.cols() == 0) return;
    if (is_decode(tokens)) {
      launch_scattered_linear<T>(y, x, w, indices, nullptr);
      return;
    }
    WorkspaceCursor cursor(workspace);
    const IndexedScratch<T> scratch = carve_linear_scatter_add<T>(cursor, tokens, w.rows());
    gemm_->run(scratch.rows, x, w, scratch.rest, stream_);
    launch_scatter_add_rows(y, ConstMatrixView<T>(scratch.rows), indices, stream_);
  }

  // Route groups sized in device memory run the decode kernels, so a group
  // holds at most decode_max_tokens rows; they need no workspace.
  static constexpr index_t group_max_rows = decode_max_tokens;

  template <ElementType T>
  void gather_swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x, const RouteGroup& group,
                     std::type_identity_t<ConstMatrixView<T>> gate, std::type_identity_t<ConstMatrixView<T>> up,
                     Workspace /*workspace*/ = {}) {
    detail::check_gather_swiglu(h, x, group.permutation, gate, up);
    detail::check_route_group(group, h.rows(), group_max_rows, h, "gather_swiglu");
    if (h.empty() || x.rows() == 0) return;
    launch_gathered_swiglu(h, x, group.permutation, gate, up, &group);
  }

  template <ElementType T, int StaticLength = dynamic_extent>
  void linear_scatter_add(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
                          std::type_identity_t<ConstMatrixView<T>> w, const RouteGroup& group,
                          Workspace /*workspace*/ = {}, Extent<StaticLength> = {}) {
    detail::check_linear_scatter_add(y, x, w, group.permutation, StaticLength);
    detail::check_route_group(group, x.rows(), group_max_rows, y, "linear_scatter_add");
    if (x.rows() == 0 || y.cols() == 0) return;
    launch_scattered_linear<T>(y, x, w, group.permutation, &group);
  }

  template <ElementType T>
  void rms_norm(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
                std::type_identity_t<ConstMatrixView<T>> weight, float epsilon) {
    detail::check_rms_norm(y, x, weight, epsilon);
    launch_rms_norm(y, x, weight, epsilon, stream_);
  }

  // dst = src widened to float32 (the float32 logits of a 16-bit model;
  // for float a copy).
  template <ElementType T>
  void convert(MatrixView<float> dst, ConstMatrixView<T> src) {
    detail::check_convert(dst, src);
    launch_widen_rows(dst, src, stream_);
  }

  template <ElementType T>
  void relu_in_place(MatrixView<T> x) {
    detail::check_view(x, "relu_in_place", "matrix");
    launch_relu_in_place(x, stream_);
  }

  template <ElementType T>
  void contribution_ratios(float* ratios, ConstMatrixView<T> block,
                           std::type_identity_t<ConstMatrixView<T>> residual) {
    detail::check_contribution(ratios, block, residual);
    launch_contribution_ratios(ratios, block, residual, stream_);
  }

 private:
  struct HandleDeleter {
    bool owned = true;
    void operator()(cublasLtHandle_t handle) const {
      if (owned) cublasLtDestroy(handle);
    }
  };

  static cublasLtHandle_t create_handle() {
    cublasLtHandle_t handle = nullptr;
    ELASTIC_CUBLAS_CHECK(cublasLtCreate(&handle));
    return handle;
  }

  static int multiprocessor_count() {
    int device = 0;
    int count = 0;
    ELASTIC_CUDA_CHECK(cudaGetDevice(&device));
    ELASTIC_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  }

  // A routing call's token count as an int (route plans count in int).
  static int route_tokens(index_t tokens, const char* op) { return detail::narrow_to_int(tokens, op, "the token count"); }

  static void check_workspace(Workspace workspace, std::size_t needed, const char* op) {
    require<WorkspaceError>(workspace.bytes >= needed, op, ": workspace too small: need at least ",
                            needed, " bytes, found ", workspace.bytes);
    require<WorkspaceError>(workspace.bytes == 0 || workspace.data != nullptr, op,
                            ": workspace of ", workspace.bytes, " bytes has a null pointer");
    require<WorkspaceError>(
        workspace.bytes == 0 || reinterpret_cast<std::uintptr_t>(workspace.data) % workspace_alignment == 0, op,
        ": workspace must be ", workspace_alignment, "-byte aligned (cuBLASLt's requirement), found address ",
        workspace.data);
  }

  template <class T>
  struct SwigluScratch {
    MatrixView<T> up;  // x . W_up^T for prefill
    Workspace gemm;    // cuBLASLt's share
  };

  // A [rows x cols] matrix in the workspace, rows padded to whole 16-byte vectors.
  template <class T>
  static MatrixView<T> take_rows(WorkspaceCursor& cursor, index_t rows, index_t cols) {
    const auto stride = static_cast<index_t>(align_up(static_cast<std::size_t>(cols), math::vector_width<T>));
    return MatrixView<T>(cursor.take<T>(static_cast<std::size_t>(rows * stride)), rows, cols, stride);
  }

  template <class T>
  static SwigluScratch<T> carve_swiglu(WorkspaceCursor& cursor, index_t tokens, index_t width) {
    const MatrixView<T> up = take_rows<T>(cursor, tokens, width);
    auto* gemm = cursor.take<std::byte>(gemm_workspace_bytes);
    return {up, Workspace{gemm, gemm_workspace_bytes}};
  }

  // Above decode sizes: the group's rows in the workspace (gathered inputs
  // or computed outputs), then the workspace of the dense step.
  template <class T>
  struct IndexedScratch {
    MatrixView<T> rows;
    Workspace rest;
  };

  template <class T>
  IndexedScratch<T> carve_gather_swiglu(WorkspaceCursor& cursor, index_t tokens, index_t out, index_t in) const {
    const MatrixView<T> rows = take_rows<T>(cursor, tokens, in);
    const std::size_t rest = swiglu_workspace_bytes<T>(tokens, out, in);
    return {rows, Workspace{cursor.take<std::byte>(rest), rest}};
  }

  template <class T>
  static IndexedScratch<T> carve_linear_scatter_add(WorkspaceCursor& cursor, index_t tokens, index_t out) {
    const MatrixView<T> rows = take_rows<T>(cursor, tokens, out);
    return {rows, Workspace{cursor.take<std::byte>(gemm_workspace_bytes), gemm_workspace_bytes}};
  }

  // The most positions any sequence of a decode batch sees.
  static int longest_visible(const AttentionBatch& batch) {
    int longest = 0;
    for (std::size_t s = 0; s < batch.sequences(); ++s)
      longest = std::max(longest, batch.cached_lengths[s] + batch.new_lengths[s]);
    return longest;
  }

  // The size queries and the calls carve the same way, so they cannot disagree.
  template <class T>
  std::size_t attention_scratch_bytes(const AttentionBatch& batch, int heads, int head_dim) const {
    if (batch.is_decode())
      return decode_attention_workspace_bytes(static_cast<int>(batch.sequences()), heads, head_dim,
                                              longest_visible(batch));
    WorkspaceCursor cursor;
    carve_prefill<T>(cursor, batch, plan_prefill_splits<T>(batch, heads, head_dim, multiprocessors_), head_dim);
    return cursor.bytes_used();
  }

  struct PrefillScratch {
    int* metadata;  // prefill_metadata_ints() ints
    PrefillPartials partials;
  };

  // The metadata and the partials of a prefill call, sized by the plan's
  // bounds (so a workspace sized for more heads serves fewer).
  template <class T>
  static PrefillScratch carve_prefill(WorkspaceCursor& cursor, const AttentionBatch& batch,
                                      const PrefillSplitPlan& plan, int head_dim) {
    PrefillScratch scratch{};
    scratch.metadata = cursor.take<int>(prefill_metadata_ints(batch, plan));
    const auto rows = static_cast<std::size_t>(plan.partial_slot_bound) * PrefillShape<T>::rows;
    scratch.partials.states = cursor.take<math::SoftmaxState>(rows);
    scratch.partials.values = cursor.take<float>(rows * static_cast<std::size_t>(head_dim));
    return scratch;
  }

  struct DecodeScratch {
    int* metadata;  // decode_metadata_ints() ints
    DecodePartials partials;
  };

  DecodeScratch carve_decode(WorkspaceCursor& cursor, int sequences, int heads, int head_dim, int max_context) const {
    DecodeScratch scratch{};
    scratch.metadata = cursor.take<int>(decode_metadata_ints(static_cast<std::size_t>(sequences)));
    const std::size_t slots =
        decode_partial_slots(sequences, max_context, multiprocessors_) * static_cast<std::size_t>(heads);
    scratch.partials.states = cursor.take<math::SoftmaxState>(slots);
    scratch.partials.values = cursor.take<float>(slots * static_cast<std::size_t>(head_dim));
    return scratch;
  }

  // Uploads a checked decode batch into `workspace` and fixes the launches.
  template <class T, int HeadDim>
  DecodeAttentionPlan<T, HeadDim> make_decode_plan(MatrixView<T> out, ConstMatrixView<T> q, ConstMatrixView<T> k,
                                                   ConstMatrixView<T> v, const KVCacheView<T>& cache,
                                                   const AttentionBatch& batch, const AttentionParams<HeadDim>& params,
                                                   int max_context, Workspace workspace) {
    check_decode_grid(batch.sequences(), params.kv_heads);
    WorkspaceCursor cursor(workspace);
    const DecodeScratch scratch =
        carve_decode(cursor, static_cast<int>(batch.sequences()), params.heads, HeadDim, max_context);
    const DecodeMetadata uploaded = staging_.upload_decode(scratch.metadata, batch, stream_);
    DecodeAttentionPlan<T, HeadDim> plan;
    plan.args = make_attention_args<T, HeadDim>(out, q, k, v, cache, params, uploaded.metadata);
    plan.grid = make_decode_grid(params.group_size, params.kv_heads, max_context, multiprocessors_);
    plan.fields = uploaded.fields;
    plan.partials = scratch.partials;
    plan.max_context = max_context;
    return plan;
  }

  template <class T, int NumRows>
  static RowDotParams<T, NumRows> row_dot_params(MatrixView<T> out, ConstMatrixView<T> x,
                                                 const ConstMatrixView<T> (&weights)[NumRows]) {
    RowDotParams<T, NumRows> params{};
    for (int r = 0; r < NumRows; ++r) {
      params.weights[r] = weights[r].data();
      params.weight_strides[r] = weights[r].row_stride();
    }
    params.activations = x.data();
    params.activation_stride = x.row_stride();
    params.output = out.data();
    params.output_stride = out.row_stride();
    params.rows = static_cast<int>(out.cols());
    params.length = static_cast<int>(x.cols());
    params.tokens = static_cast<int>(x.rows());
    return params;
  }

  // The decode kernels over rows picked by `indices`: h.rows() tokens read by
  // index, or x.rows() results added into rows of y; with a group, only the
  // group's own size (read on the device) of them, starting at its offset.
  template <class T>
  void launch_gathered_swiglu(MatrixView<T> h, ConstMatrixView<T> x, const int* indices, ConstMatrixView<T> gate,
                              ConstMatrixView<T> up, const RouteGroup* group) {
    RowDotParams<T, 2> params = row_dot_params<T, 2>(h, x, {gate, up});
    params.tokens = static_cast<int>(h.rows());
    params.source_rows = indices;
    params.source_row_count = x.rows();
    size_by_group(params, group);
    launch_row_dots<T, 2, true>(params, math::SwiGLU{}, multiprocessors_, stream_);
  }

  template <class T>
  void launch_scattered_linear(MatrixView<T> y, ConstMatrixView<T> x, ConstMatrixView<T> w, const int* indices,
                               const RouteGroup* group) {
    RowDotParams<T, 1> params = row_dot_params<T, 1>(y, x, {w});
    params.output_rows = indices;
    params.output_row_count = y.rows();
    size_by_group(params, group);
    launch_row_dots<T, 1, false>(params, math::Identity{}, multiprocessors_, stream_);
  }

  template <class T, int NumRows>
  static void size_by_group(RowDotParams<T, NumRows>& params, const RouteGroup* group) {
    if (group == nullptr) return;
    params.group_first = group->first;
    params.group_count = group->count;
    params.group_plan_tokens = group->plan_tokens;
  }

  cudaStream_t stream_;
  std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, HandleDeleter> handle_;
  std::unique_ptr<GemmPlanCache> gemm_;
  int multiprocessors_;
  AttentionStaging staging_;
  RouteStatusLog route_status_;
};

static_assert(elastic::Executor<Executor>);
static_assert(AttentionExecutorFor<Executor, float> && AttentionExecutorFor<Executor, half_t> &&
              AttentionExecutorFor<Executor, bfloat16_t>);
static_assert(RoutingExecutorFor<Executor, float> && RoutingExecutorFor<Executor, half_t> &&
              RoutingExecutorFor<Executor, bfloat16_t>);

}  // namespace elastic::cuda
