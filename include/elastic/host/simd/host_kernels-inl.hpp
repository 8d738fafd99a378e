// Every Highway kernel of the host executor, for host_kernels.hpp's one pass
// of hwy/foreach_target.h. Highway 1.0 compiles only the first
// foreach_target.h pass of a translation unit for every instruction set (a
// second pass finds highway.h's per-target part already closed and builds
// the static target again), so all kernels share one pass. No include guard:
// the pass includes this file once per instruction set, and each kernel's
// own per-target toggle admits it once each time.
#include "elastic/host/simd/quant_row_dots-inl.hpp"
#include "elastic/host/simd/row_dots-inl.hpp"
