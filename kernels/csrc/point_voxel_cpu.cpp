// CPU loops of the point-voxel operators; see point_voxel_cpu.h for the contracts.
//
// One loop iteration does what one CUDA thread does, by calling the same function of
// point_voxel_element.h. Where the GPU scatters with atomics (voxel sums, gradients of
// gathers), the CPU gives each thread whole output rows (one shape and channel) and walks
// the points in order, so no two threads write one value and results are deterministic.
// Built with -ffp-contract=off, like nvcc's --fmad=false.
#include "point_voxel_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "nearest_cells.h"
#include "point_voxel_element.h"

namespace lion_kernels {
namespace cpu {
namespace {

// Runs body(i) for i in [0, total) on ATen's thread pool, at least `grain` per thread. Loops
// go over rows (one shape, or one shape and channel) so that the inner loop walks contiguous
// memory without the index divisions a flat element loop needs.
template <typename Body>
void parallel_each(int64_t total, int64_t grain, const Body &body) {
  at::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

// Ball query scans candidates in blocks: a first pass over a block counts the candidates
// closer than `limit`, with no branch, so the compiler vectorizes it; only a block holding one
// is then visited candidate by candidate, in index order. Skipping a block changes nothing,
// because a visit takes only candidates closer than `limit`, and both passes compute the same
// distance (-ffp-contract=off), so results equal the plain loop the GPU runs. Most blocks hold
// none: a ball of radius 0.1 holds ~1 of 2048 points.
constexpr int64_t kScanBlock = 64;

template <typename T>
inline bool any_closer(T ax, T ay, T az, const T *x, const T *y, const T *z, int64_t begin, int64_t end,
                       T limit) {
  int closer = 0;
  for (int64_t j = begin; j < end; ++j) closer += element::squared_distance(ax, ay, az, x[j], y[j], z[j]) < limit;
  return closer > 0;
}

// Adds each point's gradient, weighted, into the K neighbours it was interpolated from:
// grad_source[b,c,index[b,k,n]] += weight[b,k,n] * grad_out[b,c,n]. One thread owns one
// (shape, channel) row of grad_source and zeroes it first; the GPU scatters atomically instead.
// out[b,c,n] = the weighted sum over the K sources point n was interpolated from; one thread
// per (shape, channel) row, as one CUDA thread per element computes it.
template <int K, typename T>
void gather_weighted(int batch, int channels, int points, int64_t sources, const T *source,
                     const int32_t *index, const T *weight, T *out) {
  parallel_each(static_cast<int64_t>(batch) * channels, 1, [&](int64_t bc) {
    const int64_t b = bc / channels;
    T *row = out + bc * points;
    for (int64_t n = 0; n < points; ++n) {
      const int64_t at = b * K * points + n;
      row[n] = element::weighted_gather<K>(source + bc * sources, index + at, weight + at, points);
    }
  });
}

template <int K, typename T>
void scatter_weighted(int batch, int channels, int points, int64_t sources, const int32_t *index,
                      const T *weight, const T *grad_out, T *grad_source) {
  parallel_each(static_cast<int64_t>(batch) * channels, 1, [&](int64_t bc) {
    const int64_t b = bc / channels;
    T *g = grad_source + bc * sources;
    std::fill(g, g + sources, T(0));
    for (int64_t n = 0; n < points; ++n) {
      const int64_t at = b * K * points + n;
      const T grad = grad_out[bc * points + n];
      for (int k = 0; k < K; ++k) g[index[at + k * points]] += weight[at + k * points] * grad;
    }
  });
}

}  // namespace

template <typename T>
void avg_voxelize_forward(int batch, int channels, int points, int r, const int32_t *vox,
                          const T *feat, int32_t *voxel_index, int32_t *counts, T *point_weight,
                          T *out) {
  const int64_t cells = static_cast<int64_t>(r) * r * r;
  parallel_each(batch, 1, [&](int64_t b) {
    int32_t *count = counts + b * cells;
    for (int64_t n = 0; n < points; ++n) {
      const int32_t cell = element::voxel_cell(vox + b * 3 * points + n, points, r);
      voxel_index[b * points + n] = cell;
      if (cell >= 0) ++count[cell];
    }
    for (int64_t n = 0; n < points; ++n) {
      const int32_t cell = voxel_index[b * points + n];
      point_weight[b * points + n] = element::voxel_point_weight<T>(cell, cell < 0 ? 0 : count[cell]);
    }
  });
  parallel_each(static_cast<int64_t>(batch) * channels, 1, [&](int64_t bc) {
    const int64_t b = bc / channels;
    const T *f = feat + bc * points;
    T *grid = out + bc * cells;
    std::fill(grid, grid + cells, T(0));  // here, not in a separate pass: the row stays in cache
    for (int64_t n = 0; n < points; ++n) {
      const int32_t cell = voxel_index[b * points + n];
      if (cell >= 0) grid[cell] += f[n] * point_weight[b * points + n];
    }
  });
}

template <typename T>
void avg_voxelize_backward(int batch, int channels, int points, int cells,
                           const int32_t *voxel_index, const T *point_weight, const T *grad_out,
                           T *grad_feat) {
  parallel_each(static_cast<int64_t>(batch) * channels, 1, [&](int64_t bc) {
    const int64_t b = bc / channels;
    const int32_t *cell = voxel_index + b * points;
    const T *weight = point_weight + b * points;
    T *grad = grad_feat + bc * points;
    for (int64_t n = 0; n < points; ++n) {
      grad[n] = element::avg_voxelize_grad(cell[n], grad_out + bc * cells, weight[n]);
    }
  });
}

template <typename T>
void trilinear_devoxelize_forward(int batch, int channels, int points, int r, const T *vox,
                                  const T *grid, int32_t *corner_index, T *corner_weight, T *out) {
  const int64_t cells = static_cast<int64_t>(r) * r * r;
  parallel_each(batch, 1, [&](int64_t b) {
    for (int64_t n = 0; n < points; ++n) {
      element::devoxelize_corners(vox + b * 3 * points + n, points, r,
                                  corner_index + b * 8 * points + n, corner_weight + b * 8 * points + n);
    }
  });
  gather_weighted<8>(batch, channels, points, cells, grid, corner_index, corner_weight, out);
}

template <typename T>
void trilinear_devoxelize_backward(int batch, int channels, int points, int cells,
                                   const int32_t *corner_index, const T *corner_weight,
                                   const T *grad_out, T *grad_grid) {
  scatter_weighted<8>(batch, channels, points, cells, corner_index, corner_weight, grad_out, grad_grid);
}

template <typename T>
void ball_query(int batch, int centers, int points, T radius_sq, int neighbours,
                const T *center_coords, const T *point_coords, int64_t *out) {
  parallel_each(static_cast<int64_t>(batch) * centers, 64, [&](int64_t i) {
    const int64_t b = i / centers, m = i % centers;
    const T *c = center_coords + b * 3 * centers + m;
    const T *x = point_coords + b * 3 * points, *y = x + points, *z = y + points;
    int64_t *row = out + i * neighbours;
    int found = 0;
    for (int64_t begin = 0; begin < points && found < neighbours; begin += kScanBlock) {
      const int64_t end = std::min<int64_t>(begin + kScanBlock, points);
      if (!any_closer(c[0], c[centers], c[2 * centers], x, y, z, begin, end, radius_sq)) continue;
      for (int64_t j = begin; j < end && found < neighbours; ++j) {
        element::ball_query_visit(c[0], c[centers], c[2 * centers], x[j], y[j], z[j], radius_sq, j,
                                  neighbours, row, found);
      }
    }
    element::ball_query_fill(row, found, neighbours);
  });
}

template <typename T>
void grouping_forward(int batch, int channels, int points, int centers, int neighbours,
                      const T *feat, const int64_t *idx, T *out) {
  const int64_t per_channel = static_cast<int64_t>(centers) * neighbours;
  parallel_each(static_cast<int64_t>(batch) * channels, 1, [&](int64_t bc) {
    const int64_t *index = idx + (bc / channels) * per_channel;
    const T *f = feat + bc * points;
    T *row = out + bc * per_channel;
    for (int64_t mk = 0; mk < per_channel; ++mk) row[mk] = f[index[mk]];
  });
}

template <typename T>
void grouping_backward(int batch, int channels, int points, int centers, int neighbours,
                       const T *grad_out, const int64_t *idx, T *grad_feat) {
  const int64_t per_channel = static_cast<int64_t>(centers) * neighbours;
  parallel_each(static_cast<int64_t>(batch) * channels, 1, [&](int64_t bc) {
    const int64_t *index = idx + (bc / channels) * per_channel;
    const T *grad = grad_out + bc * per_channel;
    T *g = grad_feat + bc * points;
    std::fill(g, g + points, T(0));
    for (int64_t mk = 0; mk < per_channel; ++mk) g[index[mk]] += grad[mk];
  });
}

template <typename T>
void furthest_point_sample(int batch, int points, int samples, const T *coords, T *distance,
                           int64_t *out) {
  // A plain loop per shape: the GPU's block-wide argmax has no per-element body to share.
  parallel_each(batch, 1, [&](int64_t b) {
    const T *x = coords + b * 3 * points, *y = x + points, *z = y + points;
    T *d = distance + b * points;
    std::fill(d, d + points, std::numeric_limits<T>::infinity());
    int64_t *picks = out + b * samples;
    picks[0] = 0;
    int last = 0;
    for (int step = 1; step < samples; ++step) {
      T best = T(-1);
      int best_index = std::numeric_limits<int>::max();
      const T lx = x[last], ly = y[last], lz = z[last];
      // Two passes: the first has no branch, so the compiler vectorizes it.
      for (int k = 0; k < points; ++k) d[k] = element::fps_distance(d[k], lx, ly, lz, x[k], y[k], z[k]);
      for (int k = 0; k < points; ++k) element::keep_farther(best, best_index, d[k], k);
      picks[step] = best_index;
      last = best_index;
    }
  });
}

// Three-NN searches each shape's centers through a grid of cells (nearest_cells.h), its points
// taken in the order of their cells, and falls back to the plain loop for shapes or points it
// cannot grid (non-finite coordinates); both give the plain loop's result, visited with the
// GPU's per-center step.
template <typename T>
void three_nn(int batch, int points, int centers, const T *point_coords, const T *center_coords,
              int32_t *index, T *weight) {
  std::vector<NearestCells<T>> grids(batch);
  std::vector<char> gridded(batch);
  std::vector<int32_t> order(static_cast<size_t>(batch) * points);  // each shape's points, by cell
  parallel_each(batch, 1, [&](int64_t b) {
    const T *c = center_coords + b * 3 * centers, *p = point_coords + b * 3 * points;
    int32_t *o = order.data() + b * points;
    gridded[b] = grids[b].build(c, c + centers, c + 2 * centers, centers);
    if (gridded[b]) {
      grids[b].sort_by_home(p, p + points, p + 2 * points, points, o);
    } else {
      for (int n = 0; n < points; ++n) o[n] = n;
    }
  });
  at::parallel_for(0, static_cast<int64_t>(batch) * points, 256, [&](int64_t begin, int64_t end) {
    typename NearestCells<T>::Neighbourhood hood;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / points, n = order[i];
      const T *p = point_coords + b * 3 * points + n;
      const T px = p[0], py = p[points], pz = p[2 * points];
      const T *x = center_coords + b * 3 * centers;
      const bool finite = std::isfinite(px) && std::isfinite(py) && std::isfinite(pz);
      const element::Nearest3<T> nearest =
          gridded[b] && finite ? grids[b].nearest(px, py, pz, hood)
                               : three_nearest_plain(px, py, pz, x, x + centers, x + 2 * centers, centers);
      element::three_nn_finish(nearest, points, index + b * 3 * points + n, weight + b * 3 * points + n);
    }
  });
}

template <typename T>
void three_nn_interpolate_forward(int batch, int channels, int points, int centers,
                                  const T *cfeat, const int32_t *index, const T *weight, T *out) {
  gather_weighted<3>(batch, channels, points, centers, cfeat, index, weight, out);
}

template <typename T>
void three_nn_interpolate_backward(int batch, int channels, int points, int centers,
                                   const T *grad_out, const int32_t *index, const T *weight,
                                   T *grad_cfeat) {
  scatter_weighted<3>(batch, channels, points, centers, index, weight, grad_out, grad_cfeat);
}

#define INSTANTIATE(T)                                                                          \
  template void avg_voxelize_forward<T>(int, int, int, int, const int32_t *, const T *,         \
                                        int32_t *, int32_t *, T *, T *);                        \
  template void avg_voxelize_backward<T>(int, int, int, int, const int32_t *, const T *,        \
                                         const T *, T *);                                       \
  template void trilinear_devoxelize_forward<T>(int, int, int, int, const T *, const T *,       \
                                                int32_t *, T *, T *);                           \
  template void trilinear_devoxelize_backward<T>(int, int, int, int, const int32_t *, const T *, \
                                                 const T *, T *);                               \
  template void ball_query<T>(int, int, int, T, int, const T *, const T *, int64_t *);          \
  template void grouping_forward<T>(int, int, int, int, int, const T *, const int64_t *, T *);  \
  template void grouping_backward<T>(int, int, int, int, int, const T *, const int64_t *, T *); \
  template void furthest_point_sample<T>(int, int, int, const T *, T *, int64_t *);             \
  template void three_nn<T>(int, int, int, const T *, const T *, int32_t *, T *);               \
  template void three_nn_interpolate_forward<T>(int, int, int, int, const T *, const int32_t *, \
                                                const T *, T *);                                \
  template void three_nn_interpolate_backward<T>(int, int, int, int, const T *,                 \
                                                 const int32_t *, const T *, T *);

INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace cpu
}  // namespace lion_kernels
