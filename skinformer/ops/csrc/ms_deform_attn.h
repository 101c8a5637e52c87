// Multi-scale deformable attention (Deformable-DETR) for skinformer.
//
// Shapes (all tensors contiguous; the entry points make them so):
//   value               N x S x M x D     floating type T (float, double, half, bfloat16)
//   spatial_shapes      L x 2             int64, (H_l, W_l) per level
//   level_start_index   L                 int64, offset of level l along S
//   sampling_loc        N x Lq x M x L x P x 2   opmath(T), (x, y) normalised to [0, 1]
//   attn_weight         N x Lq x M x L x P       opmath(T)
//   output              N x Lq x (M * D)         T
// opmath(T) is float for half / bfloat16 and T otherwise; sampling locations and attention
// weights are consumed (and their gradients produced) in that type.
//
// Sampling is bilinear with zero padding and align_corners=False semantics, i.e. the pixel
// coordinate of a location is x * W - 0.5 (exactly what F.grid_sample computes).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <vector>

namespace skinformer {
namespace msda {

// Validates the argument shapes, dtypes and devices shared by every backend.
// Raises c10::Error (RuntimeError in Python) with a message naming the argument.
inline void check_inputs(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight) {
  TORCH_CHECK(value.dim() == 4, "value must be N x S x M x D, got ", value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "spatial_shapes must be L x 2, got ", spatial_shapes.sizes());
  const int64_t L = spatial_shapes.size(0);
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == L,
              "level_start_index must have shape (", L, "), got ", level_start_index.sizes());
  TORCH_CHECK(sampling_loc.dim() == 6 && sampling_loc.size(0) == value.size(0) &&
                  sampling_loc.size(2) == value.size(2) && sampling_loc.size(3) == L &&
                  sampling_loc.size(5) == 2,
              "sampling_loc must be N x Lq x M x L x P x 2 with N=", value.size(0),
              ", M=", value.size(2), ", L=", L, ", got ", sampling_loc.sizes());
  TORCH_CHECK(attn_weight.dim() == 5 && attn_weight.sizes() == sampling_loc.sizes().slice(0, 5),
              "attn_weight must be N x Lq x M x L x P = ", sampling_loc.sizes().slice(0, 5),
              ", got ", attn_weight.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong, "spatial_shapes must be int64");
  TORCH_CHECK(level_start_index.scalar_type() == at::kLong, "level_start_index must be int64");
  const auto opmath = at::toOpMathType(value.scalar_type());
  TORCH_CHECK(sampling_loc.scalar_type() == opmath, "sampling_loc must be ", opmath,
              " for value of type ", value.scalar_type(), ", got ", sampling_loc.scalar_type());
  TORCH_CHECK(attn_weight.scalar_type() == opmath, "attn_weight must be ", opmath,
              " for value of type ", value.scalar_type(), ", got ", attn_weight.scalar_type());
  const auto device = value.device();
  TORCH_CHECK(spatial_shapes.device() == device && level_start_index.device() == device &&
                  sampling_loc.device() == device && attn_weight.device() == device,
              "all inputs must be on the device of value (", device, ")");
}

// CPU kernels (ops/csrc/cpu/ms_deform_attn_cpu.cpp).
at::Tensor ms_deform_attn_cpu_forward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight);

// Returns {grad_value (T), grad_sampling_loc (opmath(T)), grad_attn_weight (opmath(T))}.
std::vector<at::Tensor> ms_deform_attn_cpu_backward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight,
    const at::Tensor& grad_output);

#ifdef SKINFORMER_WITH_CUDA
// CUDA kernels (ops/csrc/cuda/ms_deform_attn_cuda.cu); same contract as the CPU ones.
at::Tensor ms_deform_attn_cuda_forward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight);

std::vector<at::Tensor> ms_deform_attn_cuda_backward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight,
    const at::Tensor& grad_output);
#endif

}  // namespace msda
}  // namespace skinformer
