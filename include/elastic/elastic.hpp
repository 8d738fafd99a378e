// Umbrella header for host-only use: everything that compiles with a plain
// C++20 compiler and needs no CUDA runtime. Include elastic/elastic.cuh from
// CUDA translation units to add the CUDA executor.
#pragma once

#include "elastic/version.hpp"

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/attention_params.hpp"
#include "elastic/core/checks.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/routing_checks.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/core/quantized_matrix.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"

#include "elastic/math/activation.hpp"
#include "elastic/math/online_softmax.hpp"
#include "elastic/math/rope.hpp"
#include "elastic/math/routing.hpp"
#include "elastic/math/row_dot.hpp"

#include "elastic/host/attention.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/host/routing.hpp"
#include "elastic/host/thread_pool.hpp"
#include "elastic/host/workspace_buffer.hpp"

#include "elastic/layers/elastic_attention.hpp"
#include "elastic/layers/elastic_linear.hpp"
#include "elastic/layers/budget_router.hpp"
#include "elastic/layers/elastic_mlp.hpp"
#include "elastic/layers/routed_mlp.hpp"
#include "elastic/layers/router.hpp"
#include "elastic/layers/skippable_attention.hpp"
#include "elastic/layers/width_checks.hpp"
