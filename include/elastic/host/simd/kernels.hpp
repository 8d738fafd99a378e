// The host's vector kernels, as the executor calls them. Each is compiled
// by Highway (kernels-inl.hpp) for every instruction set it targets on this
// architecture (on x86: SSSE3, SSE4, AVX2, AVX-512 and a portable fallback;
// on Arm: NEON and SVE) in one translation unit, src/host_kernels.cpp (the
// library elastic::host_kernels, linked by elastic::elastic), and each call
// runs the best one the CPU supports, chosen on the first call. A test may
// restrict the choice with hwy::SetSupportedTargetsForTest, to run every
// compiled path on one machine.
#pragma once

#include "elastic/host/simd/attention_tile_call.hpp"
#include "elastic/host/simd/quant_row_dots_call.hpp"
#include "elastic/host/simd/row_dots_call.hpp"

namespace elastic::host::simd {

// partials[r][t] += w_r . x_t for up to 12 weight rows and 16 tokens
// (row_dots_call.hpp).
void row_dots(const RowDotsCall& call);

// The same on GGUF blocks with 8-bit activations (quant_row_dots_call.hpp).
void quant_row_dots(const QuantRowDotsCall& call);

// One pass of a tile of query rows over its key and value rows
// (attention_tile_call.hpp).
void attention_tile(const AttentionTileCall& call);

// The instruction set the kernels run on, as Highway names it.
const char* kernels_target();

}  // namespace elastic::host::simd
