// Python bindings of the multi-scale deformable attention kernels.
//
// The same file is compiled into two extensions: the CPU one (plain C++ compiler) and, with
// -DSKINFORMER_WITH_CUDA, the CUDA one. Both expose `forward`, `backward` and `device`.
#include <torch/extension.h>

#include "ms_deform_attn.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "skinformer multi-scale deformable attention kernels";
#ifdef SKINFORMER_WITH_CUDA
  m.attr("device") = "cuda";
  m.def("forward", &skinformer::msda::ms_deform_attn_cuda_forward,
        "MSDA forward (CUDA): value, spatial_shapes, level_start_index, sampling_loc, attn_weight");
  m.def("backward", &skinformer::msda::ms_deform_attn_cuda_backward,
        "MSDA backward (CUDA): ..., grad_output -> [grad_value, grad_loc, grad_attn]");
#else
  m.attr("device") = "cpu";
  m.def("forward", &skinformer::msda::ms_deform_attn_cpu_forward,
        "MSDA forward (CPU): value, spatial_shapes, level_start_index, sampling_loc, attn_weight");
  m.def("backward", &skinformer::msda::ms_deform_attn_cpu_backward,
        "MSDA backward (CPU): ..., grad_output -> [grad_value, grad_loc, grad_attn]");
#endif
}
