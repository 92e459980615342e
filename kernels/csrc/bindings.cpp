// Python bindings of the point-voxel operators: tensors in, tensors out.
//
// Built twice by kernels/extension.py: for the CPU alone, and with -DLION_WITH_CUDA beside
// point_voxel.cu. Each binding allocates its outputs on the input's device and runs the CUDA
// launcher (point_voxel.h) for CUDA tensors, the CPU loop (point_voxel_cpu.h) otherwise.
// Called only by kernels/compiled_ops.py with validated, contiguous tensors of one floating
// dtype (float32 or float64); the checks here guard against misuse, they are not the API.
#include <torch/extension.h>

#include <vector>

#include "point_voxel_cpu.h"

#ifdef LION_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "point_voxel.h"
#endif

namespace {

void check_input(const at::Tensor &t, const char *name) {
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

#ifdef LION_WITH_CUDA
void check_launch(cudaError_t status, const char *op) {
  TORCH_CHECK(status == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(status));
}

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// lion_kernels::OP on the current stream of the tensor's GPU, or lion_kernels::cpu::OP.
#define LION_LAUNCH(tensor, op, ...)                                        \
  do {                                                                      \
    if ((tensor).is_cuda()) {                                               \
      const c10::cuda::CUDAGuard guard((tensor).device());                  \
      check_launch(lion_kernels::op(__VA_ARGS__, current_stream()), #op);   \
    } else {                                                                \
      lion_kernels::cpu::op(__VA_ARGS__);                                   \
    }                                                                       \
  } while (0)
#else
#define LION_LAUNCH(tensor, op, ...)                                               \
  do {                                                                             \
    TORCH_CHECK(!(tensor).is_cuda(), #op ": this build has no CUDA kernels");      \
    lion_kernels::cpu::op(__VA_ARGS__);                                            \
  } while (0)
#endif

// An output the kernels add into: zeroed on the GPU, whose kernels add atomically; left
// uninitialized on the CPU, whose loops zero each row themselves while it is in cache.
at::Tensor scatter_output(const at::Tensor &like, at::IntArrayRef sizes) {
  return like.is_cuda() ? at::zeros(sizes, like.options()) : at::empty(sizes, like.options());
}

int size(const at::Tensor &t, int dim) { return static_cast<int>(t.size(dim)); }

std::vector<at::Tensor> avg_voxelize_forward(const at::Tensor &feat, const at::Tensor &vox,
                                             int64_t r) {
  check_input(feat, "feat");
  check_input(vox, "vox");
  TORCH_CHECK(vox.scalar_type() == at::kInt, "vox must be int32");
  const int batch = size(feat, 0), channels = size(feat, 1), points = size(feat, 2);
  const int64_t cells = r * r * r;
  auto voxel_index = at::empty({batch, points}, vox.options());
  auto counts = at::zeros({batch, cells}, vox.options());
  auto point_weight = at::empty({batch, points}, feat.options());
  auto out = scatter_output(feat, {batch, channels, cells});
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "avg_voxelize_forward", [&] {
    LION_LAUNCH(feat, avg_voxelize_forward<scalar_t>,
                     batch, channels, points, static_cast<int>(r), vox.data_ptr<int32_t>(),
                     feat.data_ptr<scalar_t>(), voxel_index.data_ptr<int32_t>(),
                     counts.data_ptr<int32_t>(), point_weight.data_ptr<scalar_t>(),
                     out.data_ptr<scalar_t>());
  });
  return {out, voxel_index, point_weight};
}

at::Tensor avg_voxelize_backward(const at::Tensor &grad_out, const at::Tensor &voxel_index,
                                 const at::Tensor &point_weight) {
  check_input(grad_out, "grad_out");
  const int batch = size(grad_out, 0), channels = size(grad_out, 1), cells = size(grad_out, 2);
  const int points = size(voxel_index, 1);
  auto grad_feat = at::empty({batch, channels, points}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "avg_voxelize_backward", [&] {
    LION_LAUNCH(grad_out, avg_voxelize_backward<scalar_t>,
                     batch, channels, points, cells, voxel_index.data_ptr<int32_t>(),
                     point_weight.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(),
                     grad_feat.data_ptr<scalar_t>());
  });
  return grad_feat;
}

std::vector<at::Tensor> trilinear_devoxelize_forward(const at::Tensor &grid, const at::Tensor &vox,
                                                     int64_t r) {
  check_input(grid, "grid");
  check_input(vox, "vox");
  TORCH_CHECK(vox.scalar_type() == grid.scalar_type(), "vox and grid must share a dtype");
  const int batch = size(grid, 0), channels = size(grid, 1), points = size(vox, 2);
  auto corner_index = at::empty({batch, 8, points}, grid.options().dtype(at::kInt));
  auto corner_weight = at::empty({batch, 8, points}, grid.options());
  auto out = at::empty({batch, channels, points}, grid.options());
  AT_DISPATCH_FLOATING_TYPES(grid.scalar_type(), "trilinear_devoxelize_forward", [&] {
    LION_LAUNCH(grid, trilinear_devoxelize_forward<scalar_t>,
                     batch, channels, points, static_cast<int>(r), vox.data_ptr<scalar_t>(),
                     grid.data_ptr<scalar_t>(), corner_index.data_ptr<int32_t>(),
                     corner_weight.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return {out, corner_index, corner_weight};
}

at::Tensor trilinear_devoxelize_backward(const at::Tensor &grad_out, const at::Tensor &corner_index,
                                         const at::Tensor &corner_weight, int64_t cells) {
  check_input(grad_out, "grad_out");
  const int batch = size(grad_out, 0), channels = size(grad_out, 1), points = size(grad_out, 2);
  auto grad_grid = scatter_output(grad_out, {batch, channels, cells});
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "trilinear_devoxelize_backward", [&] {
    LION_LAUNCH(grad_out, trilinear_devoxelize_backward<scalar_t>,
                     batch, channels, points, static_cast<int>(cells),
                     corner_index.data_ptr<int32_t>(), corner_weight.data_ptr<scalar_t>(),
                     grad_out.data_ptr<scalar_t>(), grad_grid.data_ptr<scalar_t>());
  });
  return grad_grid;
}

at::Tensor ball_query(const at::Tensor &centers, const at::Tensor &points, double radius,
                      int64_t neighbours) {
  check_input(centers, "centers");
  check_input(points, "points");
  TORCH_CHECK(points.scalar_type() == centers.scalar_type(), "points and centers must share a dtype");
  const int batch = size(centers, 0), num_centers = size(centers, 2), num_points = size(points, 2);
  auto out = at::empty({batch, num_centers, neighbours}, centers.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(centers.scalar_type(), "ball_query", [&] {
    // radius² is rounded from double once, as the reference compares against it.
    const scalar_t radius_sq = static_cast<scalar_t>(radius * radius);
    LION_LAUNCH(centers, ball_query<scalar_t>,
                     batch, num_centers, num_points, radius_sq, static_cast<int>(neighbours),
                     centers.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(),
                     out.data_ptr<int64_t>());
  });
  return out;
}

at::Tensor grouping_forward(const at::Tensor &feat, const at::Tensor &idx) {
  check_input(feat, "feat");
  check_input(idx, "idx");
  TORCH_CHECK(idx.scalar_type() == at::kLong, "idx must be int64");
  const int batch = size(feat, 0), channels = size(feat, 1), points = size(feat, 2);
  const int centers = size(idx, 1), neighbours = size(idx, 2);
  auto out = at::empty({batch, channels, centers, neighbours}, feat.options());
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "grouping_forward", [&] {
    LION_LAUNCH(feat, grouping_forward<scalar_t>,
                     batch, channels, points, centers, neighbours, feat.data_ptr<scalar_t>(),
                     idx.data_ptr<int64_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor grouping_backward(const at::Tensor &grad_out, const at::Tensor &idx, int64_t points) {
  check_input(grad_out, "grad_out");
  const int batch = size(grad_out, 0), channels = size(grad_out, 1);
  const int centers = size(idx, 1), neighbours = size(idx, 2);
  auto grad_feat = scatter_output(grad_out, {batch, channels, points});
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "grouping_backward", [&] {
    LION_LAUNCH(grad_out, grouping_backward<scalar_t>,
                     batch, channels, static_cast<int>(points), centers, neighbours,
                     grad_out.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                     grad_feat.data_ptr<scalar_t>());
  });
  return grad_feat;
}

at::Tensor furthest_point_sample(const at::Tensor &coords, int64_t samples) {
  check_input(coords, "coords");
  const int batch = size(coords, 0), points = size(coords, 2);
  auto distance = at::empty({batch, points}, coords.options());
  auto out = at::empty({batch, samples}, coords.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "furthest_point_sample", [&] {
    LION_LAUNCH(coords, furthest_point_sample<scalar_t>,
                     batch, points, static_cast<int>(samples), coords.data_ptr<scalar_t>(),
                     distance.data_ptr<scalar_t>(), out.data_ptr<int64_t>());
  });
  return out;
}

std::vector<at::Tensor> three_nn(const at::Tensor &points, const at::Tensor &centers) {
  check_input(points, "points");
  check_input(centers, "centers");
  TORCH_CHECK(points.scalar_type() == centers.scalar_type(), "points and centers must share a dtype");
  const int batch = size(points, 0), num_points = size(points, 2), num_centers = size(centers, 2);
  auto index = at::empty({batch, 3, num_points}, points.options().dtype(at::kInt));
  auto weight = at::empty({batch, 3, num_points}, points.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "three_nn", [&] {
    LION_LAUNCH(points, three_nn<scalar_t>,
                     batch, num_points, num_centers, points.data_ptr<scalar_t>(),
                     centers.data_ptr<scalar_t>(), index.data_ptr<int32_t>(),
                     weight.data_ptr<scalar_t>());
  });
  return {index, weight};
}

at::Tensor three_nn_interpolate_forward(const at::Tensor &cfeat, const at::Tensor &index,
                                        const at::Tensor &weight) {
  check_input(cfeat, "cfeat");
  TORCH_CHECK(weight.scalar_type() == cfeat.scalar_type(), "weight and cfeat must share a dtype");
  const int batch = size(cfeat, 0), channels = size(cfeat, 1), centers = size(cfeat, 2);
  const int points = size(index, 2);
  auto out = at::empty({batch, channels, points}, cfeat.options());
  AT_DISPATCH_FLOATING_TYPES(cfeat.scalar_type(), "three_nn_interpolate_forward", [&] {
    LION_LAUNCH(cfeat, three_nn_interpolate_forward<scalar_t>,
                     batch, channels, points, centers, cfeat.data_ptr<scalar_t>(),
                     index.data_ptr<int32_t>(), weight.data_ptr<scalar_t>(),
                     out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor three_nn_interpolate_backward(const at::Tensor &grad_out, const at::Tensor &index,
                                         const at::Tensor &weight, int64_t centers) {
  check_input(grad_out, "grad_out");
  const int batch = size(grad_out, 0), channels = size(grad_out, 1), points = size(grad_out, 2);
  auto grad_cfeat = scatter_output(grad_out, {batch, channels, centers});
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "three_nn_interpolate_backward", [&] {
    LION_LAUNCH(grad_out, three_nn_interpolate_backward<scalar_t>,
                     batch, channels, points, static_cast<int>(centers),
                     grad_out.data_ptr<scalar_t>(), index.data_ptr<int32_t>(),
                     weight.data_ptr<scalar_t>(), grad_cfeat.data_ptr<scalar_t>());
  });
  return grad_cfeat;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "LION point-voxel operators (CPU, and CUDA when built with it), PVCNN semantics";
  m.def("avg_voxelize_forward", &avg_voxelize_forward);
  m.def("avg_voxelize_backward", &avg_voxelize_backward);
  m.def("trilinear_devoxelize_forward", &trilinear_devoxelize_forward);
  m.def("trilinear_devoxelize_backward", &trilinear_devoxelize_backward);
  m.def("ball_query", &ball_query);
  m.def("grouping_forward", &grouping_forward);
  m.def("grouping_backward", &grouping_backward);
  m.def("furthest_point_sample", &furthest_point_sample);
  m.def("three_nn", &three_nn);
  m.def("three_nn_interpolate_forward", &three_nn_interpolate_forward);
  m.def("three_nn_interpolate_backward", &three_nn_interpolate_backward);
}
