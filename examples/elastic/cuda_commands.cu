// The `elastic` CLI's subcommands on the CUDA executor, compiled by nvcc
// apart from the rest of the program (built only with CUDA): the model-running
// subcommands, `elastic latency` and the measurements of `elastic search`.
#include "commands.hpp"
#include "cuda_runner.cuh"
#include "latency.hpp"
#include "subnetwork_measurement.hpp"

namespace elastic::cli {

int run_command_on_cuda(Command command, const CommandOptions& options) {
  return run_command<CudaRunner>(command, options);
}

int run_latency_on_cuda(const std::string& model_path, const LatencyOptions& options) {
  if (options.dtype == "bf16") return measure_and_write_latency<CudaRunner<bfloat16_t>>(model_path, options);
  return measure_and_write_latency<CudaRunner<float>>(model_path, options);
}

std::unique_ptr<SubnetworkMeter> cuda_subnetwork_meter(const RunOptions& run) {
  if (run.dtype == "bf16") return std::make_unique<RunnerMeter<CudaRunner<bfloat16_t>>>(run);
  return std::make_unique<RunnerMeter<CudaRunner<float>>>(run);
}

}  // namespace elastic::cli
