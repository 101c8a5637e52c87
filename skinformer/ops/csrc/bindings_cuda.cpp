// Bindings of the CUDA extension: the shared bindings compiled with the CUDA entry points.
// (A separate file so the CPU and CUDA extensions never share an object file name.)
#define SKINFORMER_WITH_CUDA 1
#include "bindings.cpp"
