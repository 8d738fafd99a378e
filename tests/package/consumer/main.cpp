// Host consumer: runs the small elastic MLP on the host executor using only
// the elastic::elastic target, as a downstream engine would, and checks that
// every output is finite and not all zero.
#include <cmath>
#include <cstdio>
#include <exception>

#include "small_mlp.hpp"

int main() {
  try {
    double checksum = 0.0;
    for (float value : consumer::host_forward(consumer::HostData{})) {
      if (!std::isfinite(value)) {
        std::fprintf(stderr, "elastic consumer: non-finite output\n");
        return 1;
      }
      checksum += std::fabs(value);
    }
    if (checksum == 0.0) {
      std::fprintf(stderr, "elastic consumer: the output is all zero\n");
      return 1;
    }
    std::printf("elastic %d.%d.%d: ElasticMLP<float, Widths%s> at width %d, sum |y| = %.6f\n",
                ELASTIC_VERSION_MAJOR, ELASTIC_VERSION_MINOR, ELASTIC_VERSION_PATCH,
                consumer::Widths::describe().c_str(), consumer::width, checksum);
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "elastic consumer: %s\n", error.what());
    return 1;
  }
}
