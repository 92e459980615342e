// The per-element arithmetic of the point-voxel operators, shared by the CUDA kernels
// (point_voxel.cu: one thread runs one call) and the CPU loops (point_voxel_cpu.cpp: one loop
// iteration runs one call), so every CPU test exercises the arithmetic the GPU runs and only
// the launch code differs. Semantics: kernels/ops.py; vectorized twin: kernels/reference.py.
//
// Both builds turn off fused multiply-add (nvcc --fmad=false, gcc -ffp-contract=off), so
// squared distances and weights round like the reference's separate multiplies and adds and
// all three paths choose the same neighbours.
//
// `stride` arguments step between the rows of one point's values in a [B,X,N] layout (N).
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define LION_ELEMENT __host__ __device__ __forceinline__
#else
#define LION_ELEMENT inline
#endif

namespace lion_kernels {
namespace element {

template <typename T>
LION_ELEMENT T squared_distance(T ax, T ay, T az, T bx, T by, T bz) {
  const T dx = ax - bx, dy = ay - by, dz = az - bz;
  return dx * dx + dy * dy + dz * dz;
}

// One point's value interpolated from K sources of one channel's row (grid cells or centers):
// the sum of row[index[k*stride]] * weight[k*stride], k in order. Trilinear devoxelization
// (K = 8 corners) and three-NN interpolation (K = 3) both end in it.
template <int K, typename T>
LION_ELEMENT T weighted_gather(const T *row, const int32_t *index, const T *weight, int64_t stride) {
  T sum = row[index[0]] * weight[0];
  for (int k = 1; k < K; ++k) sum += row[index[k * stride]] * weight[k * stride];
  return sum;
}

// ---- average voxelization ----

// Flat voxel x*r*r + y*r + z of the point whose integer voxel is vox[0], vox[stride],
// vox[2*stride]; -1 when it lies outside the grid (a caller error that must not touch memory).
LION_ELEMENT int32_t voxel_cell(const int32_t *vox, int64_t stride, int r) {
  const int x = vox[0], y = vox[stride], z = vox[2 * stride];
  const bool inside = x >= 0 && x < r && y >= 0 && y < r && z >= 0 && z < r;
  return inside ? (x * r + y) * r + z : -1;
}

// What one point contributes per unit of feature: 1 / (points in its voxel), 0 outside.
template <typename T>
LION_ELEMENT T voxel_point_weight(int32_t cell, int32_t count) {
  return cell < 0 ? T(0) : T(1) / static_cast<T>(count);
}

// d(out)/d(feat) of one point and channel: the gradient of its voxel times its weight.
template <typename T>
LION_ELEMENT T avg_voxelize_grad(int32_t cell, const T *grad_grid_row, T point_weight) {
  return cell < 0 ? T(0) : grad_grid_row[cell] * point_weight;
}

// ---- trilinear devoxelization ----

// The 8 grid corners around one point (corner order 000..111 in x, y, z bits) and their
// weights, written at index[corner*stride] and weight[corner*stride]. A coordinate with no
// fractional part takes its lower voxel twice (the upper with weight 0), so r-1 stays inside.
template <typename T>
LION_ELEMENT void devoxelize_corners(const T *vox, int64_t stride, int r, int32_t *index,
                                     T *weight) {
  const int32_t last_cell = r * r * r - 1;
  T upper[3], lower[3];
  int low[3], step[3];
  for (int axis = 0; axis < 3; ++axis) {
    const T v = vox[axis * stride];
    const T floor_v = floor(v);
    upper[axis] = v - floor_v;
    lower[axis] = T(1) - upper[axis];
    low[axis] = static_cast<int>(floor_v);
    step[axis] = upper[axis] > T(0) ? 1 : 0;
  }
  const int32_t base = (low[0] * r + low[1]) * r + low[2];
  const int32_t strides[3] = {step[0] * r * r, step[1] * r, step[2]};
  for (int corner = 0; corner < 8; ++corner) {
    const int xb = corner >> 2, yb = (corner >> 1) & 1, zb = corner & 1;
    const T wx = xb ? upper[0] : lower[0];
    const T wy = yb ? upper[1] : lower[1];
    const T wz = zb ? upper[2] : lower[2];
    int32_t cell = base + xb * strides[0] + yb * strides[1] + zb * strides[2];
    // Coordinates outside [0, r-1] are a caller error; clamping keeps memory safe.
    cell = cell < 0 ? 0 : (cell > last_cell ? last_cell : cell);
    index[corner * stride] = cell;
    weight[corner * stride] = (wx * wy) * wz;
  }
}

// ---- ball query ----

// Considers point `j` for the center (cx, cy, cz): appends it to `row` while fewer than
// `neighbours` are found. Visiting points in index order gives PVCNN's first-K choice.
template <typename T>
LION_ELEMENT void ball_query_visit(T cx, T cy, T cz, T px, T py, T pz, T radius_sq, int64_t j,
                                   int neighbours, int64_t *row, int &found) {
  if (found < neighbours && squared_distance(cx, cy, cz, px, py, pz) < radius_sq) {
    row[found++] = j;
  }
}

// Unused slots repeat the first hit; a center with no point in its ball gets all zeros.
LION_ELEMENT void ball_query_fill(int64_t *row, int found, int neighbours) {
  const int64_t first = found > 0 ? row[0] : 0;
  for (int k = found; k < neighbours; ++k) row[k] = first;
}

// ---- three nearest neighbours ----

// The three nearest centers seen so far, ordered by (squared distance, index): start with
// `three_nn_start`, visit the centers in index order, then `three_nn_finish`.
template <typename T>
struct Nearest3 {
  T d0, d1, d2;
  int i0, i1, i2;
};

template <typename T>
LION_ELEMENT Nearest3<T> three_nn_start() {
  return Nearest3<T>{T(INFINITY), T(INFINITY), T(INFINITY), 0, 0, 0};
}

template <typename T>
LION_ELEMENT void three_nn_visit(Nearest3<T> &nearest, T d, int k) {
  // Strict comparisons keep equal distances in index order, as PVCNN does.
  if (d < nearest.d2) {
    if (d < nearest.d1) {
      nearest.d2 = nearest.d1;
      nearest.i2 = nearest.i1;
      if (d < nearest.d0) {
        nearest.d1 = nearest.d0;
        nearest.i1 = nearest.i0;
        nearest.d0 = d;
        nearest.i0 = k;
      } else {
        nearest.d1 = d;
        nearest.i1 = k;
      }
    } else {
      nearest.d2 = d;
      nearest.i2 = k;
    }
  }
}

// Writes the indices and the 1/d^2 weights (d^2 clamped to [1e-10, 1e10], normalized in
// PVCNN's product form) at index[slot*stride], weight[slot*stride]. Missing neighbours (fewer
// than 3 centers) stay center 0 at d^2 = 1e10.
template <typename T>
LION_ELEMENT void three_nn_finish(const Nearest3<T> &nearest, int64_t stride, int32_t *index,
                                  T *weight) {
  const T lo = T(1e-10), hi = T(1e10);
  const T d0 = fmin(fmax(nearest.d0, lo), hi);
  const T d1 = fmin(fmax(nearest.d1, lo), hi);
  const T d2 = fmin(fmax(nearest.d2, lo), hi);
  const T d0d1 = d0 * d1, d0d2 = d0 * d2, d1d2 = d1 * d2;
  const T inverse_total = T(1) / (d0d1 + d0d2 + d1d2);
  index[0] = nearest.i0;
  index[stride] = nearest.i1;
  index[2 * stride] = nearest.i2;
  weight[0] = d1d2 * inverse_total;
  weight[stride] = d0d2 * inverse_total;
  weight[2 * stride] = d0d1 * inverse_total;
}

// ---- furthest point sampling ----

// A point's squared distance to the chosen set after the point (lx, ly, lz) joined it.
template <typename T>
LION_ELEMENT T fps_distance(T current, T lx, T ly, T lz, T x, T y, T z) {
  const T d = squared_distance(lx, ly, lz, x, y, z);
  return d < current ? d : current;
}

// Keeps the farther of two candidates; equal distances go to the lower index.
template <typename T>
LION_ELEMENT void keep_farther(T &best, int &best_index, T other, int other_index) {
  if (other > best || (other == best && other_index < best_index)) {
    best = other;
    best_index = other_index;
  }
}

}  // namespace element
}  // namespace lion_kernels
