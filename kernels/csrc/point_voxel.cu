// CUDA kernels of the point-voxel operators; see point_voxel.h for the launchers' contracts.
//
// Each kernel's per-point or per-voxel arithmetic lives in point_voxel_element.h, shared with
// the CPU loops (point_voxel_cpu.cpp); this file holds the launch structure (grid-stride loops,
// shared-memory tiles, atomics, reductions). Built with --fmad=false: squared distances and
// interpolation weights then round exactly like kernels/reference.py, so all paths choose the
// same neighbours and samples.
#include "point_voxel.h"
#include "point_voxel_element.h"

#include <climits>
#include <cstdint>

namespace lion_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 256;       // points or centers staged in shared memory per block
constexpr int kMaxBlocks = 1 << 20;
constexpr int kFpsMaxThreads = 1024;
// Dynamic shared memory for staged points, leaving room for the static reduction buffers
// under the 48 KiB every GPU grants without opting in.
constexpr size_t kFpsSharedLimit = 47 * 1024;

inline int blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

#define GRID_STRIDE_LOOP(i, total)                                                   \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;     \
       i < (total); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

using element::squared_distance;

// ---- average voxelization -------------------------------------------------------------

__global__ void voxel_index_kernel(int batch, int points, int r, const int32_t *vox,
                                   int32_t *voxel_index, int32_t *counts) {
  const int64_t cells = static_cast<int64_t>(r) * r * r;
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * points) {
    const int64_t b = i / points, n = i % points;
    const int32_t cell = element::voxel_cell(vox + b * 3 * points + n, points, r);
    voxel_index[i] = cell;
    if (cell >= 0) atomicAdd(counts + b * cells + cell, 1);
  }
}

template <typename T>
__global__ void point_weight_kernel(int batch, int points, int64_t cells,
                                    const int32_t *voxel_index, const int32_t *counts,
                                    T *point_weight) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * points) {
    const int32_t cell = voxel_index[i];
    point_weight[i] = element::voxel_point_weight<T>(cell, cell < 0 ? 0 : counts[(i / points) * cells + cell]);
  }
}

template <typename T>
__global__ void avg_voxelize_scatter_kernel(int batch, int channels, int points, int64_t cells,
                                            const int32_t *voxel_index, const T *point_weight,
                                            const T *feat, T *out) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * points) {
    const int64_t n = i % points, bc = i / points, b = bc / channels;
    const int32_t cell = voxel_index[b * points + n];
    if (cell >= 0) atomicAdd(out + bc * cells + cell, feat[i] * point_weight[b * points + n]);
  }
}

template <typename T>
__global__ void avg_voxelize_grad_kernel(int batch, int channels, int points, int64_t cells,
                                         const int32_t *voxel_index, const T *point_weight,
                                         const T *grad_out, T *grad_feat) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * points) {
    const int64_t n = i % points, bc = i / points, b = bc / channels;
    grad_feat[i] = element::avg_voxelize_grad(voxel_index[b * points + n], grad_out + bc * cells,
                                              point_weight[b * points + n]);
  }
}

// ---- trilinear devoxelization ---------------------------------------------------------

template <typename T>
__global__ void devoxelize_corners_kernel(int batch, int points, int r, const T *vox,
                                          int32_t *corner_index, T *corner_weight) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * points) {
    const int64_t at = (i / points) * 3 * points + i % points;
    const int64_t corners_at = (i / points) * 8 * points + i % points;
    element::devoxelize_corners(vox + at, points, r, corner_index + corners_at,
                                corner_weight + corners_at);
  }
}

template <typename T>
__global__ void devoxelize_gather_kernel(int batch, int channels, int points, int64_t cells,
                                         const int32_t *corner_index, const T *corner_weight,
                                         const T *grid, T *out) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * points) {
    const int64_t n = i % points, bc = i / points, b = bc / channels;
    const int64_t at = b * 8 * points + n;
    out[i] = element::weighted_gather<8>(grid + bc * cells, corner_index + at, corner_weight + at,
                                        points);
  }
}

template <typename T>
__global__ void devoxelize_grad_kernel(int batch, int channels, int points, int64_t cells,
                                       const int32_t *corner_index, const T *corner_weight,
                                       const T *grad_out, T *grad_grid) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * points) {
    const int64_t n = i % points, bc = i / points, b = bc / channels;
    const int32_t *index = corner_index + b * 8 * points + n;
    const T *weight = corner_weight + b * 8 * points + n;
    T *g = grad_grid + bc * cells;
    const T grad = grad_out[i];
    for (int corner = 0; corner < 8; ++corner) {
      atomicAdd(g + index[corner * points], weight[corner * points] * grad);
    }
  }
}

// ---- ball query -----------------------------------------------------------------------

// One thread per center; blocks of one batch scan the points tile by tile and stop as soon
// as every center of the block has its K neighbours.
template <typename T>
__global__ void ball_query_kernel(int centers, int points, T radius_sq, int neighbours,
                                  const T *center_coords, const T *point_coords, int64_t *out) {
  __shared__ T tile[3][kTile];
  const int b = blockIdx.y;
  const int m = blockIdx.x * blockDim.x + threadIdx.x;
  const bool active = m < centers;
  const T *c = center_coords + static_cast<int64_t>(b) * 3 * centers;
  const T *p = point_coords + static_cast<int64_t>(b) * 3 * points;
  const T cx = active ? c[m] : T(0);
  const T cy = active ? c[centers + m] : T(0);
  const T cz = active ? c[2 * centers + m] : T(0);
  int64_t *row = out + (static_cast<int64_t>(b) * centers + (active ? m : 0)) * neighbours;
  int found = 0;
  for (int start = 0; start < points; start += kTile) {
    if (!__syncthreads_or(active && found < neighbours)) break;
    const int size = min(kTile, points - start);
    for (int j = threadIdx.x; j < size; j += blockDim.x) {
      tile[0][j] = p[start + j];
      tile[1][j] = p[points + start + j];
      tile[2][j] = p[2 * points + start + j];
    }
    __syncthreads();
    if (active) {
      for (int j = 0; j < size && found < neighbours; ++j) {
        element::ball_query_visit(cx, cy, cz, tile[0][j], tile[1][j], tile[2][j], radius_sq,
                                  static_cast<int64_t>(start + j), neighbours, row, found);
      }
    }
  }
  if (active) element::ball_query_fill(row, found, neighbours);
}

// ---- grouping -------------------------------------------------------------------------

template <typename T>
__global__ void grouping_kernel(int batch, int channels, int points, int centers, int neighbours,
                                const T *feat, const int64_t *idx, T *out) {
  const int64_t per_channel = static_cast<int64_t>(centers) * neighbours;
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * per_channel) {
    const int64_t mk = i % per_channel, bc = i / per_channel, b = bc / channels;
    out[i] = feat[bc * points + idx[b * per_channel + mk]];
  }
}

template <typename T>
__global__ void grouping_grad_kernel(int batch, int channels, int points, int centers,
                                     int neighbours, const T *grad_out, const int64_t *idx,
                                     T *grad_feat) {
  const int64_t per_channel = static_cast<int64_t>(centers) * neighbours;
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * per_channel) {
    const int64_t mk = i % per_channel, bc = i / per_channel, b = bc / channels;
    atomicAdd(grad_feat + bc * points + idx[b * per_channel + mk], grad_out[i]);
  }
}

// ---- furthest point sampling ----------------------------------------------------------

using element::keep_farther;

template <typename T>
__device__ __forceinline__ void warp_farthest(T &best, int &best_index) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const T other = __shfl_down_sync(0xffffffffu, best, offset);
    const int other_index = __shfl_down_sync(0xffffffffu, best_index, offset);
    keep_farther(best, best_index, other, other_index);
  }
}

// One block per shape. The point-to-set distances (and the points, when they fit) live in
// shared memory; each step is one pass over the points and a two-level argmax.
template <typename T>
__global__ void furthest_point_sample_kernel(int points, int samples, const T *coords,
                                             T *distance_workspace, bool in_shared,
                                             int64_t *out) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_bytes[];
  __shared__ T warp_best[32];
  __shared__ int warp_index[32];
  __shared__ int chosen;
  const int b = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  const T *xs = coords + static_cast<int64_t>(b) * 3 * points;
  T *distance = distance_workspace + static_cast<int64_t>(b) * points;
  if (in_shared) {
    T *staged = reinterpret_cast<T *>(shared_bytes);
    for (int k = threadIdx.x; k < 3 * points; k += blockDim.x) staged[k] = xs[k];
    xs = staged;
    distance = staged + 3 * points;
  }
  const T *ys = xs + points, *zs = ys + points;
  for (int k = threadIdx.x; k < points; k += blockDim.x) distance[k] = T(INFINITY);
  if (threadIdx.x == 0) out[static_cast<int64_t>(b) * samples] = 0;
  __syncthreads();
  int last = 0;
  for (int step = 1; step < samples; ++step) {
    const T lx = xs[last], ly = ys[last], lz = zs[last];
    T best = T(-1);
    int best_index = INT_MAX;
    for (int k = threadIdx.x; k < points; k += blockDim.x) {
      const T d = element::fps_distance(distance[k], lx, ly, lz, xs[k], ys[k], zs[k]);
      distance[k] = d;
      if (d > best) {
        best = d;
        best_index = k;
      }
    }
    warp_farthest(best, best_index);
    if (lane == 0) {
      warp_best[warp] = best;
      warp_index[warp] = best_index;
    }
    __syncthreads();
    if (warp == 0) {
      best = lane < warps ? warp_best[lane] : T(-1);
      best_index = lane < warps ? warp_index[lane] : INT_MAX;
      warp_farthest(best, best_index);
      if (lane == 0) {
        chosen = best_index;
        out[static_cast<int64_t>(b) * samples + step] = best_index;
      }
    }
    __syncthreads();
    last = chosen;
  }
}

// ---- three nearest neighbours ---------------------------------------------------------

// One thread per point; the centers of the point's shape are staged tile by tile.
template <typename T>
__global__ void three_nn_kernel(int points, int centers, const T *point_coords,
                                const T *center_coords, int32_t *index, T *weight) {
  __shared__ T tile[3][kTile];
  const int b = blockIdx.y;
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  const bool active = n < points;
  const T *p = point_coords + static_cast<int64_t>(b) * 3 * points;
  const T *c = center_coords + static_cast<int64_t>(b) * 3 * centers;
  const T px = active ? p[n] : T(0);
  const T py = active ? p[points + n] : T(0);
  const T pz = active ? p[2 * points + n] : T(0);
  element::Nearest3<T> nearest = element::three_nn_start<T>();
  for (int start = 0; start < centers; start += kTile) {
    const int size = min(kTile, centers - start);
    __syncthreads();
    for (int j = threadIdx.x; j < size; j += blockDim.x) {
      tile[0][j] = c[start + j];
      tile[1][j] = c[centers + start + j];
      tile[2][j] = c[2 * centers + start + j];
    }
    __syncthreads();
    for (int j = 0; j < size; ++j) {
      element::three_nn_visit(nearest, squared_distance(px, py, pz, tile[0][j], tile[1][j], tile[2][j]),
                              start + j);
    }
  }
  if (!active) return;
  const int64_t at = static_cast<int64_t>(b) * 3 * points + n;
  element::three_nn_finish(nearest, points, index + at, weight + at);
}

template <typename T>
__global__ void three_nn_interpolate_kernel(int batch, int channels, int points, int centers,
                                            const T *cfeat, const int32_t *index,
                                            const T *weight, T *out) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * points) {
    const int64_t n = i % points, bc = i / points, b = bc / channels;
    const int64_t at = b * 3 * points + n;
    out[i] = element::weighted_gather<3>(cfeat + bc * centers, index + at, weight + at, points);
  }
}

template <typename T>
__global__ void three_nn_interpolate_grad_kernel(int batch, int channels, int points,
                                                 int centers, const T *grad_out,
                                                 const int32_t *index, const T *weight,
                                                 T *grad_cfeat) {
  GRID_STRIDE_LOOP(i, static_cast<int64_t>(batch) * channels * points) {
    const int64_t n = i % points, bc = i / points, b = bc / channels;
    const int64_t at = b * 3 * points + n;
    T *g = grad_cfeat + bc * centers;
    const T grad = grad_out[i];
    for (int slot = 0; slot < 3; ++slot) {
      atomicAdd(g + index[at + slot * points], weight[at + slot * points] * grad);
    }
  }
}

}  // namespace

// ---- launchers ------------------------------------------------------------------------

template <typename T>
cudaError_t avg_voxelize_forward(int batch, int channels, int points, int r, const int32_t *vox,
                                 const T *feat, int32_t *voxel_index, int32_t *counts,
                                 T *point_weight, T *out, cudaStream_t stream) {
  const int64_t cells = static_cast<int64_t>(r) * r * r;
  const int64_t point_work = static_cast<int64_t>(batch) * points;
  voxel_index_kernel<<<blocks_for(point_work), kThreads, 0, stream>>>(batch, points, r, vox,
                                                                         voxel_index, counts);
  point_weight_kernel<T><<<blocks_for(point_work), kThreads, 0, stream>>>(
      batch, points, cells, voxel_index, counts, point_weight);
  avg_voxelize_scatter_kernel<T><<<blocks_for(point_work * channels), kThreads, 0, stream>>>(
      batch, channels, points, cells, voxel_index, point_weight, feat, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t avg_voxelize_backward(int batch, int channels, int points, int cells,
                                  const int32_t *voxel_index, const T *point_weight,
                                  const T *grad_out, T *grad_feat, cudaStream_t stream) {
  const int64_t work = static_cast<int64_t>(batch) * channels * points;
  avg_voxelize_grad_kernel<T><<<blocks_for(work), kThreads, 0, stream>>>(
      batch, channels, points, cells, voxel_index, point_weight, grad_out, grad_feat);
  return cudaGetLastError();
}

template <typename T>
cudaError_t trilinear_devoxelize_forward(int batch, int channels, int points, int r,
                                         const T *vox, const T *grid, int32_t *corner_index,
                                         T *corner_weight, T *out, cudaStream_t stream) {
  const int64_t cells = static_cast<int64_t>(r) * r * r;
  const int64_t point_work = static_cast<int64_t>(batch) * points;
  devoxelize_corners_kernel<T><<<blocks_for(point_work), kThreads, 0, stream>>>(
      batch, points, r, vox, corner_index, corner_weight);
  devoxelize_gather_kernel<T><<<blocks_for(point_work * channels), kThreads, 0, stream>>>(
      batch, channels, points, cells, corner_index, corner_weight, grid, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t trilinear_devoxelize_backward(int batch, int channels, int points, int cells,
                                          const int32_t *corner_index, const T *corner_weight,
                                          const T *grad_out, T *grad_grid, cudaStream_t stream) {
  const int64_t work = static_cast<int64_t>(batch) * channels * points;
  devoxelize_grad_kernel<T><<<blocks_for(work), kThreads, 0, stream>>>(
      batch, channels, points, cells, corner_index, corner_weight, grad_out, grad_grid);
  return cudaGetLastError();
}

template <typename T>
cudaError_t ball_query(int batch, int centers, int points, T radius_sq, int neighbours,
                       const T *center_coords, const T *point_coords, int64_t *out,
                       cudaStream_t stream) {
  const dim3 grid((centers + kTile - 1) / kTile, batch);
  ball_query_kernel<T><<<grid, kTile, 0, stream>>>(centers, points, radius_sq, neighbours,
                                                   center_coords, point_coords, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grouping_forward(int batch, int channels, int points, int centers, int neighbours,
                             const T *feat, const int64_t *idx, T *out, cudaStream_t stream) {
  const int64_t work = static_cast<int64_t>(batch) * channels * centers * neighbours;
  grouping_kernel<T><<<blocks_for(work), kThreads, 0, stream>>>(batch, channels, points, centers,
                                                                neighbours, feat, idx, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grouping_backward(int batch, int channels, int points, int centers, int neighbours,
                              const T *grad_out, const int64_t *idx, T *grad_feat,
                              cudaStream_t stream) {
  const int64_t work = static_cast<int64_t>(batch) * channels * centers * neighbours;
  grouping_grad_kernel<T><<<blocks_for(work), kThreads, 0, stream>>>(
      batch, channels, points, centers, neighbours, grad_out, idx, grad_feat);
  return cudaGetLastError();
}

template <typename T>
cudaError_t furthest_point_sample(int batch, int points, int samples, const T *coords,
                                  T *distance, int64_t *out, cudaStream_t stream) {
  int threads = 32;
  while (threads < points && threads < kFpsMaxThreads) threads <<= 1;
  const size_t shared = 4 * static_cast<size_t>(points) * sizeof(T);
  const bool in_shared = shared <= kFpsSharedLimit;
  furthest_point_sample_kernel<T><<<batch, threads, in_shared ? shared : 0, stream>>>(
      points, samples, coords, distance, in_shared, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t three_nn(int batch, int points, int centers, const T *point_coords,
                     const T *center_coords, int32_t *index, T *weight, cudaStream_t stream) {
  const dim3 grid((points + kTile - 1) / kTile, batch);
  three_nn_kernel<T><<<grid, kTile, 0, stream>>>(points, centers, point_coords, center_coords,
                                                 index, weight);
  return cudaGetLastError();
}

template <typename T>
cudaError_t three_nn_interpolate_forward(int batch, int channels, int points, int centers,
                                         const T *cfeat, const int32_t *index, const T *weight,
                                         T *out, cudaStream_t stream) {
  const int64_t work = static_cast<int64_t>(batch) * channels * points;
  three_nn_interpolate_kernel<T><<<blocks_for(work), kThreads, 0, stream>>>(
      batch, channels, points, centers, cfeat, index, weight, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t three_nn_interpolate_backward(int batch, int channels, int points, int centers,
                                          const T *grad_out, const int32_t *index,
                                          const T *weight, T *grad_cfeat, cudaStream_t stream) {
  const int64_t work = static_cast<int64_t>(batch) * channels * points;
  three_nn_interpolate_grad_kernel<T><<<blocks_for(work), kThreads, 0, stream>>>(
      batch, channels, points, centers, grad_out, index, weight, grad_cfeat);
  return cudaGetLastError();
}

#define INSTANTIATE(T)                                                                         \
  template cudaError_t avg_voxelize_forward<T>(int, int, int, int, const int32_t *, const T *, \
                                               int32_t *, int32_t *, T *, T *, cudaStream_t); \
  template cudaError_t avg_voxelize_backward<T>(int, int, int, int, const int32_t *,          \
                                                const T *, const T *, T *, cudaStream_t);      \
  template cudaError_t trilinear_devoxelize_forward<T>(int, int, int, int, const T *,         \
                                                       const T *, int32_t *, T *, T *,         \
                                                       cudaStream_t);                          \
  template cudaError_t trilinear_devoxelize_backward<T>(int, int, int, int, const int32_t *,  \
                                                        const T *, const T *, T *,             \
                                                        cudaStream_t);                         \
  template cudaError_t ball_query<T>(int, int, int, T, int, const T *, const T *, int64_t *,  \
                                     cudaStream_t);                                            \
  template cudaError_t grouping_forward<T>(int, int, int, int, int, const T *,                \
                                           const int64_t *, T *, cudaStream_t);                \
  template cudaError_t grouping_backward<T>(int, int, int, int, int, const T *,               \
                                            const int64_t *, T *, cudaStream_t);               \
  template cudaError_t furthest_point_sample<T>(int, int, int, const T *, T *, int64_t *,     \
                                                cudaStream_t);                                 \
  template cudaError_t three_nn<T>(int, int, int, const T *, const T *, int32_t *, T *,       \
                                   cudaStream_t);                                              \
  template cudaError_t three_nn_interpolate_forward<T>(int, int, int, int, const T *,         \
                                                       const int32_t *, const T *, T *,        \
                                                       cudaStream_t);                          \
  template cudaError_t three_nn_interpolate_backward<T>(int, int, int, int, const T *,        \
                                                        const int32_t *, const T *, T *,       \
                                                        cudaStream_t);

INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace lion_kernels
