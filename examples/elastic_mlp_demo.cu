// elastic_mlp_demo_cuda: elastic_mlp_demo.cpp compiled by nvcc, which turns on
// its CUDA executor (the source checks __CUDACC__). Nothing else lives here,
// so the host and CUDA programs cannot drift apart.
#include "elastic_mlp_demo.cpp"
