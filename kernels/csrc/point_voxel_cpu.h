// CPU loops of the point-voxel operators (PVCNN semantics), over raw host pointers.
//
// The same contracts as the CUDA launchers in point_voxel.h, without a stream: layouts are
// C-contiguous, T is float or double. The outputs the CUDA launchers need zeroed (they add into
// them atomically) are zeroed here, row by row while in cache; `counts` must still be zeroed. Work is split over the
// threads of ATen's pool (OpenMP), so torch.set_num_threads governs it.
#pragma once

#include <cstdint>

namespace lion_kernels {
namespace cpu {

template <typename T>
void avg_voxelize_forward(int batch, int channels, int points, int r, const int32_t *vox,
                          const T *feat, int32_t *voxel_index, int32_t *counts, T *point_weight,
                          T *out);

template <typename T>
void avg_voxelize_backward(int batch, int channels, int points, int cells,
                           const int32_t *voxel_index, const T *point_weight, const T *grad_out,
                           T *grad_feat);

template <typename T>
void trilinear_devoxelize_forward(int batch, int channels, int points, int r, const T *vox,
                                  const T *grid, int32_t *corner_index, T *corner_weight, T *out);

template <typename T>
void trilinear_devoxelize_backward(int batch, int channels, int points, int cells,
                                   const int32_t *corner_index, const T *corner_weight,
                                   const T *grad_out, T *grad_grid);

template <typename T>
void ball_query(int batch, int centers, int points, T radius_sq, int neighbours,
                const T *center_coords, const T *point_coords, int64_t *out);

template <typename T>
void grouping_forward(int batch, int channels, int points, int centers, int neighbours,
                      const T *feat, const int64_t *idx, T *out);

template <typename T>
void grouping_backward(int batch, int channels, int points, int centers, int neighbours,
                       const T *grad_out, const int64_t *idx, T *grad_feat);

// `distance` is a [B,N] workspace.
template <typename T>
void furthest_point_sample(int batch, int points, int samples, const T *coords, T *distance,
                           int64_t *out);

template <typename T>
void three_nn(int batch, int points, int centers, const T *point_coords, const T *center_coords,
              int32_t *index, T *weight);

template <typename T>
void three_nn_interpolate_forward(int batch, int channels, int points, int centers,
                                  const T *cfeat, const int32_t *index, const T *weight, T *out);

template <typename T>
void three_nn_interpolate_backward(int batch, int channels, int points, int centers,
                                   const T *grad_out, const int32_t *index, const T *weight,
                                   T *grad_cfeat);

}  // namespace cpu
}  // namespace lion_kernels
