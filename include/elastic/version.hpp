// Version of the Elastic headers. The numbers here are the single source the
// CMake project reads, so the package version and the macros never disagree.
#pragma once

#define ELASTIC_VERSION_MAJOR 0
#define ELASTIC_VERSION_MINOR 1
#define ELASTIC_VERSION_PATCH 0

// One integer that orders releases: MAJOR * 10000 + MINOR * 100 + PATCH.
#define ELASTIC_VERSION \
  (ELASTIC_VERSION_MAJOR * 10000 + ELASTIC_VERSION_MINOR * 100 + ELASTIC_VERSION_PATCH)
