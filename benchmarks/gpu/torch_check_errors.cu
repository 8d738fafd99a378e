// The error message store behind elastic_last_error(), shared by the entry
// points of libelastic_torch_check (see torch_check.cuh).
#include "torch_check.cuh"

namespace elastic::torch_check {

std::string& last_error() {
  thread_local std::string message;
  return message;
}

}  // namespace elastic::torch_check

extern "C" const char* elastic_last_error() { return elastic::torch_check::last_error().c_str(); }
