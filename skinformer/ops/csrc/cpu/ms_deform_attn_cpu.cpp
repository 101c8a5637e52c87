// CPU kernels of multi-scale deformable attention (see ../ms_deform_attn.h for the contract).
//
// Forward: parallel over blocks of (n, m, q) items (head-major, so a thread mostly reads one
// head's rows); for every item the L*P sample points are folded into a channel-contiguous
// accumulator of length D (value is N x S x M x D, so the D channels of one pixel and head are
// adjacent and the inner loop vectorises; D = 32 / 64 get a compile-time loop in registers).
// The four corner weights and (clamped) row offsets of a point are computed once, outside the
// channel loop, which therefore has no bounds checks.
// Backward: parallel over (n, m); a thread owns the grad_value rows of its (n, m) pair, so no
// atomics are needed, and grad_value, grad_sampling_loc and grad_attn_weight are produced in one
// pass over the sample points. at::parallel_for respects torch.set_num_threads.
#include "../ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace skinformer {
namespace msda {
namespace {

// The four bilinear corners of one sample point: (y0, x0), (y0, x1), (y1, x0), (y1, x1).
// Corners outside the image get weight 0 and a clamped (valid) pixel index, so the channel loops
// need no bounds checks.
template <typename acc_t>
struct Corners {
  int64_t pixel[4];
  acc_t weight[4];
  bool valid[4];
  acc_t lx, ly, hx, hy;
};

// Returns false when no corner of the point lies inside the H x W image (zero contribution and
// zero gradient), mirroring F.grid_sample(mode="bilinear", padding_mode="zeros",
// align_corners=False), whose pixel coordinate is loc * size - 0.5.
template <typename acc_t>
inline bool bilinear_corners(acc_t loc_x, acc_t loc_y, int64_t H, int64_t W, Corners<acc_t>& c) {
  const acc_t x = loc_x * static_cast<acc_t>(W) - static_cast<acc_t>(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(H) - static_cast<acc_t>(0.5);
  // Written so that NaN fails the test.
  if (!(x >= static_cast<acc_t>(-1) && y >= static_cast<acc_t>(-1) &&
        x < static_cast<acc_t>(W) && y < static_cast<acc_t>(H))) {
    return false;
  }
  const acc_t fx = std::floor(x);
  const acc_t fy = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(fx);
  const int64_t y0 = static_cast<int64_t>(fy);
  c.lx = x - fx;
  c.ly = y - fy;
  c.hx = static_cast<acc_t>(1) - c.lx;
  c.hy = static_cast<acc_t>(1) - c.ly;
  const bool vx0 = x0 >= 0, vx1 = x0 + 1 < W, vy0 = y0 >= 0, vy1 = y0 + 1 < H;
  const int64_t cx0 = vx0 ? x0 : 0, cx1 = vx1 ? x0 + 1 : W - 1;
  const int64_t cy0 = vy0 ? y0 : 0, cy1 = vy1 ? y0 + 1 : H - 1;
  c.pixel[0] = cy0 * W + cx0;
  c.pixel[1] = cy0 * W + cx1;
  c.pixel[2] = cy1 * W + cx0;
  c.pixel[3] = cy1 * W + cx1;
  c.valid[0] = vy0 && vx0;
  c.valid[1] = vy0 && vx1;
  c.valid[2] = vy1 && vx0;
  c.valid[3] = vy1 && vx1;
  const acc_t zero = static_cast<acc_t>(0);
  c.weight[0] = c.valid[0] ? c.hy * c.hx : zero;
  c.weight[1] = c.valid[1] ? c.hy * c.lx : zero;
  c.weight[2] = c.valid[2] ? c.ly * c.hx : zero;
  c.weight[3] = c.valid[3] ? c.ly * c.lx : zero;
  return true;
}

// Checks that the level table is consistent with S (it indexes value without bounds checks).
void check_levels(const at::Tensor& spatial_shapes, const at::Tensor& level_start_index, int64_t S) {
  const int64_t L = spatial_shapes.size(0);
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  int64_t offset = 0;
  for (int64_t l = 0; l < L; ++l) {
    TORCH_CHECK(shapes[2 * l] > 0 && shapes[2 * l + 1] > 0, "spatial_shapes[", l,
                "] must be positive, got (", shapes[2 * l], ", ", shapes[2 * l + 1], ")");
    TORCH_CHECK(starts[l] == offset, "level_start_index[", l, "] must be ", offset, ", got ",
                starts[l]);
    offset += shapes[2 * l] * shapes[2 * l + 1];
  }
  TORCH_CHECK(offset == S, "value has S=", S, " positions but spatial_shapes sum to ", offset);
}

// Adds the L*P bilinear samples of one (n, q, m) item into acc[0:D]. kD > 0 fixes D at compile
// time (the accumulator then lives in registers); kD == 0 reads the runtime D.
template <int kD, typename scalar_t, typename acc_t>
inline void accumulate_item(
    acc_t* __restrict__ acc,
    const scalar_t* head,
    const int64_t* shapes,
    const int64_t* starts,
    const acc_t* loc,
    const acc_t* attn,
    int64_t L, int64_t P, int64_t row, int64_t runtime_D) {
  const int64_t D = kD > 0 ? kD : runtime_D;
  Corners<acc_t> c;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const scalar_t* level = head + starts[l] * row;
    for (int64_t p = 0; p < P; ++p, loc += 2, ++attn) {
      const acc_t a = *attn;
      if (a == static_cast<acc_t>(0) || !bilinear_corners(loc[0], loc[1], H, W, c)) continue;
      const acc_t w0 = a * c.weight[0], w1 = a * c.weight[1];
      const acc_t w2 = a * c.weight[2], w3 = a * c.weight[3];
      const scalar_t* __restrict__ v0 = level + c.pixel[0] * row;
      const scalar_t* __restrict__ v1 = level + c.pixel[1] * row;
      const scalar_t* __restrict__ v2 = level + c.pixel[2] * row;
      const scalar_t* __restrict__ v3 = level + c.pixel[3] * row;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) {
        acc[d] += w0 * static_cast<acc_t>(v0[d]) + w1 * static_cast<acc_t>(v1[d]) +
            w2 * static_cast<acc_t>(v2[d]) + w3 * static_cast<acc_t>(v3[d]);
      }
    }
  }
}

template <typename scalar_t, int kD>
void forward_impl(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight,
    at::Tensor& output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_loc.size(1), L = sampling_loc.size(3), P = sampling_loc.size(4);
  const scalar_t* value_ptr = value.data_ptr<scalar_t>();
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  const acc_t* loc_ptr = sampling_loc.data_ptr<acc_t>();
  const acc_t* attn_ptr = attn_weight.data_ptr<acc_t>();
  scalar_t* out_ptr = output.data_ptr<scalar_t>();
  const int64_t row = M * D;  // stride between two pixels of the same head
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, L * P * D));

  // Items are ordered head-major, (n, m, q), so each thread's contiguous chunk mostly reads
  // the value rows of one head (better cache reuse than query-major order).
  at::parallel_for(0, N * M * Lq, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc_buffer(kD > 0 ? 0 : D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t nm = i / Lq, q = i % Lq;
      const int64_t n = nm / M, m = nm % M;
      const int64_t item = (n * Lq + q) * M + m;
      const scalar_t* head = value_ptr + n * S * row + m * D;
      const acc_t* loc = loc_ptr + item * L * P * 2;
      const acc_t* attn = attn_ptr + item * L * P;
      scalar_t* out = out_ptr + item * D;
      if constexpr (kD > 0) {
        acc_t acc[kD > 0 ? kD : 1];
        for (int64_t d = 0; d < kD; ++d) acc[d] = static_cast<acc_t>(0);
        accumulate_item<kD>(acc, head, shapes, starts, loc, attn, L, P, row, D);
        for (int64_t d = 0; d < kD; ++d) out[d] = static_cast<scalar_t>(acc[d]);
      } else {
        acc_t* acc = acc_buffer.data();
        for (int64_t d = 0; d < D; ++d) acc[d] = static_cast<acc_t>(0);
        accumulate_item<0>(acc, head, shapes, starts, loc, attn, L, P, row, D);
        for (int64_t d = 0; d < D; ++d) out[d] = static_cast<scalar_t>(acc[d]);
      }
    }
  });
}

// Gradients of one (n, q, m) item: accumulates into the grad_value rows of its head and
// writes its L*P location and weight gradients. go is grad_output of the item in acc_t.
template <int kD, typename scalar_t, typename acc_t>
inline void backward_item(
    const acc_t* __restrict__ go,
    const scalar_t* head,
    acc_t* grad_head,
    const int64_t* shapes,
    const int64_t* starts,
    const acc_t* loc,
    const acc_t* attn,
    acc_t* g_loc,
    acc_t* g_attn,
    int64_t L, int64_t P, int64_t row, int64_t runtime_D) {
  const int64_t D = kD > 0 ? kD : runtime_D;
  const acc_t zero = static_cast<acc_t>(0);
  Corners<acc_t> c;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const scalar_t* level = head + starts[l] * row;
    acc_t* grad_level = grad_head + starts[l] * row;
    for (int64_t p = 0; p < P; ++p, loc += 2, ++attn, g_loc += 2, ++g_attn) {
      // Outputs are zero-initialised; points outside the image keep zero gradients.
      if (!bilinear_corners(loc[0], loc[1], H, W, c)) continue;
      const acc_t a = *attn;
      // Dot products <grad_out, value corner> (clamped rows are masked out below).
      const scalar_t* __restrict__ v0 = level + c.pixel[0] * row;
      const scalar_t* __restrict__ v1 = level + c.pixel[1] * row;
      const scalar_t* __restrict__ v2 = level + c.pixel[2] * row;
      const scalar_t* __restrict__ v3 = level + c.pixel[3] * row;
      acc_t s0 = zero, s1 = zero, s2 = zero, s3 = zero;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t d = 0; d < D; ++d) {
        const acc_t g = go[d];
        s0 += g * static_cast<acc_t>(v0[d]);
        s1 += g * static_cast<acc_t>(v1[d]);
        s2 += g * static_cast<acc_t>(v2[d]);
        s3 += g * static_cast<acc_t>(v3[d]);
      }
      if (!c.valid[0]) s0 = zero;
      if (!c.valid[1]) s1 = zero;
      if (!c.valid[2]) s2 = zero;
      if (!c.valid[3]) s3 = zero;
      *g_attn = c.hy * c.hx * s0 + c.hy * c.lx * s1 + c.ly * c.hx * s2 + c.ly * c.lx * s3;
      g_loc[0] = a * static_cast<acc_t>(W) * (c.hy * (s1 - s0) + c.ly * (s3 - s2));
      g_loc[1] = a * static_cast<acc_t>(H) * (c.hx * (s2 - s0) + c.lx * (s3 - s1));
      if (a == zero) continue;
      // grad_value rows of this (n, m) belong to the calling thread only.
      for (int k = 0; k < 4; ++k) {
        if (!c.valid[k]) continue;
        const acc_t coef = a * c.weight[k];
        acc_t* __restrict__ gv = grad_level + c.pixel[k] * row;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) gv[d] += coef * go[d];
      }
    }
  }
}

template <typename scalar_t, int kD>
void backward_impl(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc,
    const at::Tensor& attn_weight,
    const at::Tensor& grad_output,
    at::Tensor& grad_value_acc,
    at::Tensor& grad_loc,
    at::Tensor& grad_attn) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_loc.size(1), L = sampling_loc.size(3), P = sampling_loc.size(4);
  const scalar_t* value_ptr = value.data_ptr<scalar_t>();
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  const acc_t* loc_ptr = sampling_loc.data_ptr<acc_t>();
  const acc_t* attn_ptr = attn_weight.data_ptr<acc_t>();
  const scalar_t* grad_out_ptr = grad_output.data_ptr<scalar_t>();
  acc_t* grad_value_ptr = grad_value_acc.data_ptr<acc_t>();
  acc_t* grad_loc_ptr = grad_loc.data_ptr<acc_t>();
  acc_t* grad_attn_ptr = grad_attn.data_ptr<acc_t>();
  const int64_t row = M * D;

  // Parallel over (n, m): a thread owns the grad_value rows of its heads, so no atomics.
  at::parallel_for(0, N * M, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> go_buffer(kD > 0 ? 0 : D);
    for (int64_t nm = begin; nm < end; ++nm) {
      const int64_t n = nm / M, m = nm % M;
      const scalar_t* head = value_ptr + n * S * row + m * D;
      acc_t* grad_head = grad_value_ptr + n * S * row + m * D;
      for (int64_t q = 0; q < Lq; ++q) {
        const int64_t item = (n * Lq + q) * M + m;
        const scalar_t* grad_out = grad_out_ptr + item * D;
        const acc_t* loc = loc_ptr + item * L * P * 2;
        const acc_t* attn = attn_ptr + item * L * P;
        acc_t* g_loc = grad_loc_ptr + item * L * P * 2;
        acc_t* g_attn = grad_attn_ptr + item * L * P;
        if constexpr (kD > 0) {
          acc_t go[kD > 0 ? kD : 1];
          for (int64_t d = 0; d < kD; ++d) go[d] = static_cast<acc_t>(grad_out[d]);
          backward_item<kD>(go, head, grad_head, shapes, starts, loc, attn, g_loc, g_attn, L, P,
                            row, D);
        } else {
          acc_t* go = go_buffer.data();
          for (int64_t d = 0; d < D; ++d) go[d] = static_cast<acc_t>(grad_out[d]);
          backward_item<0>(go, head, grad_head, shapes, starts, loc, attn, g_loc, g_attn, L, P,
                           row, D);
        }
      }
    }
  });
}

}  // namespace

at::Tensor ms_deform_attn_cpu_forward(
    const at::Tensor& value_in,
    const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in,
    const at::Tensor& sampling_loc_in,
    const at::Tensor& attn_weight_in) {
  check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in, attn_weight_in);
  TORCH_CHECK(value_in.device().is_cpu(), "ms_deform_attn_cpu_forward needs CPU tensors");
  const at::Tensor value = value_in.contiguous();
  const at::Tensor spatial_shapes = spatial_shapes_in.contiguous();
  const at::Tensor level_start_index = level_start_index_in.contiguous();
  const at::Tensor sampling_loc = sampling_loc_in.contiguous();
  const at::Tensor attn_weight = attn_weight_in.contiguous();
  check_levels(spatial_shapes, level_start_index, value.size(1));

  const int64_t N = value.size(0), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_loc.size(1);
  at::Tensor output = at::empty({N, Lq, M * D}, value.options());
  if (output.numel() == 0) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                  "ms_deform_attn_cpu_forward", [&] {
    switch (D) {  // common head dims get a compile-time channel loop
      case 32:
        forward_impl<scalar_t, 32>(value, spatial_shapes, level_start_index, sampling_loc,
                                   attn_weight, output);
        break;
      case 64:
        forward_impl<scalar_t, 64>(value, spatial_shapes, level_start_index, sampling_loc,
                                   attn_weight, output);
        break;
      default:
        forward_impl<scalar_t, 0>(value, spatial_shapes, level_start_index, sampling_loc,
                                  attn_weight, output);
    }
  });
  return output;
}

std::vector<at::Tensor> ms_deform_attn_cpu_backward(
    const at::Tensor& value_in,
    const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in,
    const at::Tensor& sampling_loc_in,
    const at::Tensor& attn_weight_in,
    const at::Tensor& grad_output_in) {
  check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in, attn_weight_in);
  TORCH_CHECK(value_in.device().is_cpu(), "ms_deform_attn_cpu_backward needs CPU tensors");
  const at::Tensor value = value_in.contiguous();
  const at::Tensor spatial_shapes = spatial_shapes_in.contiguous();
  const at::Tensor level_start_index = level_start_index_in.contiguous();
  const at::Tensor sampling_loc = sampling_loc_in.contiguous();
  const at::Tensor attn_weight = attn_weight_in.contiguous();
  check_levels(spatial_shapes, level_start_index, value.size(1));
  const int64_t N = value.size(0), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_loc.size(1);
  TORCH_CHECK(grad_output_in.dim() == 3 && grad_output_in.size(0) == N &&
                  grad_output_in.size(1) == Lq && grad_output_in.size(2) == M * D,
              "grad_output must be ", N, " x ", Lq, " x ", M * D, ", got ", grad_output_in.sizes());
  const at::Tensor grad_output = grad_output_in.to(value.scalar_type()).contiguous();

  const auto acc_type = at::toOpMathType(value.scalar_type());
  // Reduced-precision grad_value is accumulated in an opmath buffer and cast at the end.
  at::Tensor grad_value_acc = at::zeros(value.sizes(), value.options().dtype(acc_type));
  at::Tensor grad_loc = at::zeros(sampling_loc.sizes(), sampling_loc.options());
  at::Tensor grad_attn = at::zeros(attn_weight.sizes(), attn_weight.options());
  if (value.numel() > 0 && grad_attn.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                    "ms_deform_attn_cpu_backward", [&] {
      switch (D) {  // common head dims get a compile-time channel loop
        case 32:
          backward_impl<scalar_t, 32>(value, spatial_shapes, level_start_index, sampling_loc,
                                      attn_weight, grad_output, grad_value_acc, grad_loc,
                                      grad_attn);
          break;
        case 64:
          backward_impl<scalar_t, 64>(value, spatial_shapes, level_start_index, sampling_loc,
                                      attn_weight, grad_output, grad_value_acc, grad_loc,
                                      grad_attn);
          break;
        default:
          backward_impl<scalar_t, 0>(value, spatial_shapes, level_start_index, sampling_loc,
                                     attn_weight, grad_output, grad_value_acc, grad_loc,
                                     grad_attn);
      }
    });
  }
  at::Tensor grad_value = grad_value_acc.scalar_type() == value.scalar_type()
      ? grad_value_acc
      : grad_value_acc.to(value.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace msda
}  // namespace skinformer
