// Every host vector kernel, for one instruction set: the file kernels.hpp
// hands Highway's foreach_target.h, which includes it once per target (a
// translation unit can run foreach_target.h only once, so all kernels go
// through this one file). Each kernel's -inl header keeps its own
// per-target include guard.
#include "elastic/host/simd/quant_row_dots-inl.hpp"
#include "elastic/host/simd/row_dots-inl.hpp"
