// CUDA kernels of multi-scale deformable attention (see ../ms_deform_attn.h for the contract).
//
// One warp per (n, q, m) item; its 32 lanes stride over the D channels, so value reads and
// grad_value atomics are coalesced, and the per-point reductions over D (grad_sampling_loc,
// grad_attn_weight) are warp shuffles. Works for any D and any batch size. half / bfloat16
// values are read and accumulated in float; grad_value for them is accumulated in a float
// buffer (float atomics) and cast once at the end.
#ifndef SKINFORMER_WITH_CUDA
#define SKINFORMER_WITH_CUDA 1
#endif
#include "../ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cuda.h>
#include <cuda_runtime.h>

namespace skinformer {
namespace msda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

// The four bilinear corners of a sample point: (y0, x0), (y0, x1), (y1, x0), (y1, x1), as
// element offsets from the level's first row of this head (int32: the host checks S*M*D fits).
// Corners outside the image get weight 0 and a clamped (valid) offset.
template <typename acc_t>
struct Corners {
  int offset[4];
  acc_t weight[4];
  int valid;  // bit k set when corner k lies inside the image
  acc_t lx, ly, hx, hy;
};

// Same geometry as the CPU kernel: F.grid_sample bilinear / zeros / align_corners=False.
// Returns false when no corner lies inside the image.
template <typename acc_t>
__device__ __forceinline__ bool bilinear_corners(
    acc_t loc_x, acc_t loc_y, int H, int W, int row, Corners<acc_t>& c) {
  const acc_t x = loc_x * static_cast<acc_t>(W) - static_cast<acc_t>(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(H) - static_cast<acc_t>(0.5);
  if (!(x >= static_cast<acc_t>(-1) && y >= static_cast<acc_t>(-1) &&
        x < static_cast<acc_t>(W) && y < static_cast<acc_t>(H))) {
    return false;
  }
  const acc_t fx = floor(x);
  const acc_t fy = floor(y);
  const int x0 = static_cast<int>(fx);
  const int y0 = static_cast<int>(fy);
  c.lx = x - fx;
  c.ly = y - fy;
  c.hx = static_cast<acc_t>(1) - c.lx;
  c.hy = static_cast<acc_t>(1) - c.ly;
  const bool vx0 = x0 >= 0, vx1 = x0 + 1 < W, vy0 = y0 >= 0, vy1 = y0 + 1 < H;
  const int cx0 = vx0 ? x0 : 0, cx1 = vx1 ? x0 + 1 : W - 1;
  const int cy0 = vy0 ? y0 : 0, cy1 = vy1 ? y0 + 1 : H - 1;
  c.offset[0] = (cy0 * W + cx0) * row;
  c.offset[1] = (cy0 * W + cx1) * row;
  c.offset[2] = (cy1 * W + cx0) * row;
  c.offset[3] = (cy1 * W + cx1) * row;
  c.valid = (vy0 && vx0) | ((vy0 && vx1) << 1) | ((vy1 && vx0) << 2) | ((vy1 && vx1) << 3);
  const acc_t zero = static_cast<acc_t>(0);
  c.weight[0] = (c.valid & 1) ? c.hy * c.hx : zero;
  c.weight[1] = (c.valid & 2) ? c.hy * c.lx : zero;
  c.weight[2] = (c.valid & 4) ? c.ly * c.hx : zero;
  c.weight[3] = (c.valid & 8) ? c.ly * c.lx : zero;
  return true;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kWarp * kWarpsPerBlock) msda_forward_kernel(
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const acc_t* __restrict__ sampling_loc,
    const acc_t* __restrict__ attn_weight,
    scalar_t* __restrict__ output,
    int64_t num_items, int64_t Lq, int64_t S, int M, int D, int L, int P) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (item >= num_items) return;  // whole warp leaves together
  const int lane = threadIdx.x;
  const int m = static_cast<int>(item % M);
  const int64_t n = item / (M * Lq);
  const int row = M * D;
  const scalar_t* head = value + n * S * row + m * D;
  const acc_t* loc_item = sampling_loc + item * L * P * 2;
  const acc_t* attn_item = attn_weight + item * L * P;
  Corners<acc_t> c;
  for (int d0 = 0; d0 < D; d0 += kWarp) {
    const int d = d0 + lane;
    const bool active = d < D;
    acc_t acc = static_cast<acc_t>(0);
    const acc_t* loc = loc_item;
    const acc_t* attn = attn_item;
    for (int l = 0; l < L; ++l) {
      const int H = static_cast<int>(shapes[2 * l]), W = static_cast<int>(shapes[2 * l + 1]);
      const scalar_t* level = head + starts[l] * row + d;
      for (int p = 0; p < P; ++p, loc += 2, ++attn) {
        const acc_t a = *attn;
        if (!active || !bilinear_corners(loc[0], loc[1], H, W, row, c)) continue;
        acc += a * (c.weight[0] * static_cast<acc_t>(level[c.offset[0]]) +
                    c.weight[1] * static_cast<acc_t>(level[c.offset[1]]) +
                    c.weight[2] * static_cast<acc_t>(level[c.offset[2]]) +
                    c.weight[3] * static_cast<acc_t>(level[c.offset[3]]));
      }
    }
    if (active) output[item * D + d] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kWarp * kWarpsPerBlock) msda_backward_kernel(
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const acc_t* __restrict__ sampling_loc,
    const acc_t* __restrict__ attn_weight,
    const scalar_t* __restrict__ grad_output,
    acc_t* __restrict__ grad_value,
    acc_t* __restrict__ grad_loc,
    acc_t* __restrict__ grad_attn,
    int64_t num_items, int64_t Lq, int64_t S, int M, int D, int L, int P) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (item >= num_items) return;  // whole warp leaves together
  const int lane = threadIdx.x;
  const int m = static_cast<int>(item % M);
  const int64_t n = item / (M * Lq);
  const int row = M * D;
  const int64_t head_offset = n * S * row + m * D;
  const acc_t* loc = sampling_loc + item * L * P * 2;
  const acc_t* attn = attn_weight + item * L * P;
  acc_t* g_loc = grad_loc + item * L * P * 2;
  acc_t* g_attn = grad_attn + item * L * P;
  const scalar_t* grad_out = grad_output + item * D;
  Corners<acc_t> c;
  const acc_t zero = static_cast<acc_t>(0);
  for (int l = 0; l < L; ++l) {
    const int H = static_cast<int>(shapes[2 * l]), W = static_cast<int>(shapes[2 * l + 1]);
    const int64_t level_offset = head_offset + starts[l] * row;
    const scalar_t* level = value + level_offset;
    acc_t* grad_level = grad_value + level_offset;
    for (int p = 0; p < P; ++p, loc += 2, ++attn, g_loc += 2, ++g_attn) {
      // Uniform across the warp: every lane sees the same point.
      if (!bilinear_corners(loc[0], loc[1], H, W, row, c)) continue;  // outputs are zeroed
      const acc_t a = *attn;
      const bool add = a != zero;  // zero weight: no grad_value contribution
      acc_t s[4] = {zero, zero, zero, zero};
      for (int d = lane; d < D; d += kWarp) {
        const acc_t g = static_cast<acc_t>(grad_out[d]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.valid & (1 << k)) {
            s[k] += g * static_cast<acc_t>(level[c.offset[k] + d]);
            if (add) atomicAdd(grad_level + c.offset[k] + d, a * c.weight[k] * g);
          }
        }
      }
      acc_t ga = c.hy * c.hx * s[0] + c.hy * c.lx * s[1] + c.ly * c.hx * s[2] + c.ly * c.lx * s[3];
      acc_t gx = c.hy * (s[1] - s[0]) + c.ly * (s[3] - s[2]);
      acc_t gy = c.hx * (s[2] - s[0]) + c.lx * (s[3] - s[1]);
      ga = warp_sum(ga);
      gx = warp_sum(gx);
      gy = warp_sum(gy);
      if (lane == 0) {
        *g_attn = ga;
        g_loc[0] = a * static_cast<acc_t>(W) * gx;
        g_loc[1] = a * static_cast<acc_t>(H) * gy;
      }
    }
  }
}

struct Inputs {
  at::Tensor value, spatial_shapes, level_start_index, sampling_loc, attn_weight;
};

Inputs prepare(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight,
    const char* name) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  TORCH_CHECK(value.is_cuda(), name, " needs CUDA tensors");
  // Offsets inside one batch element are int32 in the kernels.
  TORCH_CHECK(value.size(1) * value.size(2) * value.size(3) < (int64_t(1) << 31), name,
              ": one batch element of value must have fewer than 2^31 elements");
  return {value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
          sampling_loc.contiguous(), attn_weight.contiguous()};
}

dim3 grid_for(int64_t num_items) {
  const int64_t blocks = (num_items + kWarpsPerBlock - 1) / kWarpsPerBlock;
  TORCH_CHECK(blocks <= 2147483647LL, "ms_deform_attn: too many queries for one launch");
  return dim3(static_cast<unsigned int>(blocks));
}

}  // namespace

at::Tensor ms_deform_attn_cuda_forward(
    const at::Tensor& value_in,
    const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in,
    const at::Tensor& sampling_loc_in,
    const at::Tensor& attn_weight_in) {
  const Inputs in = prepare(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in,
                            attn_weight_in, "ms_deform_attn_cuda_forward");
  const c10::cuda::OptionalCUDAGuard guard(in.value.device());
  const int64_t N = in.value.size(0), S = in.value.size(1), M = in.value.size(2),
                D = in.value.size(3);
  const int64_t Lq = in.sampling_loc.size(1), L = in.sampling_loc.size(3),
                P = in.sampling_loc.size(4);
  at::Tensor output = at::empty({N, Lq, M * D}, in.value.options());
  const int64_t num_items = N * Lq * M;
  if (output.numel() == 0) return output;
  const dim3 block(kWarp, kWarpsPerBlock);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.value.scalar_type(),
                                  "ms_deform_attn_cuda_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    msda_forward_kernel<scalar_t, acc_t><<<grid_for(num_items), block, 0, stream>>>(
        in.value.data_ptr<scalar_t>(), in.spatial_shapes.data_ptr<int64_t>(),
        in.level_start_index.data_ptr<int64_t>(), in.sampling_loc.data_ptr<acc_t>(),
        in.attn_weight.data_ptr<acc_t>(), output.data_ptr<scalar_t>(), num_items, Lq, S,
        static_cast<int>(M), static_cast<int>(D), static_cast<int>(L), static_cast<int>(P));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::vector<at::Tensor> ms_deform_attn_cuda_backward(
    const at::Tensor& value_in,
    const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in,
    const at::Tensor& sampling_loc_in,
    const at::Tensor& attn_weight_in,
    const at::Tensor& grad_output_in) {
  const Inputs in = prepare(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in,
                            attn_weight_in, "ms_deform_attn_cuda_backward");
  const c10::cuda::OptionalCUDAGuard guard(in.value.device());
  const int64_t N = in.value.size(0), S = in.value.size(1), M = in.value.size(2),
                D = in.value.size(3);
  const int64_t Lq = in.sampling_loc.size(1), L = in.sampling_loc.size(3),
                P = in.sampling_loc.size(4);
  TORCH_CHECK(grad_output_in.dim() == 3 && grad_output_in.size(0) == N &&
                  grad_output_in.size(1) == Lq && grad_output_in.size(2) == M * D,
              "grad_output must be ", N, " x ", Lq, " x ", M * D, ", got ", grad_output_in.sizes());
  TORCH_CHECK(grad_output_in.device() == in.value.device(),
              "grad_output must be on the device of value");
  const at::Tensor grad_output = grad_output_in.to(in.value.scalar_type()).contiguous();
  const auto acc_type = at::toOpMathType(in.value.scalar_type());
  at::Tensor grad_value_acc = at::zeros(in.value.sizes(), in.value.options().dtype(acc_type));
  at::Tensor grad_loc = at::zeros(in.sampling_loc.sizes(), in.sampling_loc.options());
  at::Tensor grad_attn = at::zeros(in.attn_weight.sizes(), in.attn_weight.options());
  const int64_t num_items = N * Lq * M;
  if (num_items > 0 && D > 0 && grad_attn.numel() > 0) {
    const dim3 block(kWarp, kWarpsPerBlock);
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.value.scalar_type(),
                                    "ms_deform_attn_cuda_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      msda_backward_kernel<scalar_t, acc_t><<<grid_for(num_items), block, 0, stream>>>(
          in.value.data_ptr<scalar_t>(), in.spatial_shapes.data_ptr<int64_t>(),
          in.level_start_index.data_ptr<int64_t>(), in.sampling_loc.data_ptr<acc_t>(),
          in.attn_weight.data_ptr<acc_t>(), grad_output.data_ptr<scalar_t>(),
          grad_value_acc.data_ptr<acc_t>(), grad_loc.data_ptr<acc_t>(),
          grad_attn.data_ptr<acc_t>(), num_items, Lq, S, static_cast<int>(M),
          static_cast<int>(D), static_cast<int>(L), static_cast<int>(P));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  at::Tensor grad_value = grad_value_acc.scalar_type() == in.value.scalar_type()
      ? grad_value_acc
      : grad_value_acc.to(in.value.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace msda
}  // namespace skinformer
