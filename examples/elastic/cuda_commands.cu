// The `elastic` CLI's subcommands on the CUDA executor, compiled by nvcc
// apart from the rest of the program (built only with CUDA).
#include "commands.hpp"
#include "cuda_runner.cuh"

namespace elastic::cli {

int run_command_on_cuda(Command command, const CommandOptions& options) {
  return run_command<CudaRunner>(command, options);
}

}  // namespace elastic::cli
