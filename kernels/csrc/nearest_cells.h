// Three nearest centers through a uniform grid of cells (CPU only; the GPU's thread measures
// every center, point_voxel.cu). A point measures the centers of the box of cells around its
// own (its neighbourhood), widened only until every center outside is provably farther than
// its third nearest; then it visits the centers that can be among the three, in index order,
// with the GPU's visit. The result equals the plain loop over all centers
// (`three_nearest_plain`), which also runs where the grid cannot be built (non-finite
// coordinates, all centers at one place). Points sorted by cell share one gathered
// neighbourhood, so a point's work is one contiguous loop over ~50 centers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "point_voxel_element.h"

namespace lion_kernels {
namespace cpu {

// The plain loop: every center, in index order.
template <typename T>
element::Nearest3<T> three_nearest_plain(T px, T py, T pz, const T *x, const T *y, const T *z,
                                         int centers) {
  element::Nearest3<T> nearest = element::three_nn_start<T>();
  for (int k = 0; k < centers; ++k) {
    element::three_nn_visit(nearest, element::squared_distance(px, py, pz, x[k], y[k], z[k]), k);
  }
  return nearest;
}

// One shape's centers sorted into cubic cells; cell (cx, cy, cz) is number (cz*ny + cy)*nx + cx,
// so a row of cells along x holds one contiguous run of sorted centers.
template <typename T>
class NearestCells {
 public:
  // About this many centers per cell of a uniform cloud: a neighbourhood of 27 cells then
  // nearly always holds a point's three nearest.
  static constexpr double kCentersPerCell = 2.0;
  static constexpr int kLanes = 8;

  // The centers of the box of cells within `reach` of one home cell, copied out contiguously,
  // and per-point buffers. One per thread; `nearest` regathers it when the cell changes.
  struct Neighbourhood {
    const NearestCells *grid = nullptr;
    int home = -1, reach = 0, count = 0;
    int lo[3], hi[3];
    std::vector<T> x, y, z, distance;
    std::vector<int32_t> index;
    std::vector<std::pair<int32_t, T>> kept;
  };

  // Sorts the centers into cells; false when they cannot be (then use the plain loop).
  bool build(const T *x, const T *y, const T *z, int centers) {
    const T *coords[3] = {x, y, z};
    double low[3], high[3];
    for (int axis = 0; axis < 3; ++axis) {
      low[axis] = std::numeric_limits<double>::infinity();
      high[axis] = -low[axis];
      for (int k = 0; k < centers; ++k) {
        const double v = coords[axis][k];
        if (!std::isfinite(v)) return false;
        low[axis] = std::min(low[axis], v);
        high[axis] = std::max(high[axis], v);
      }
    }
    extent_ = std::max({high[0] - low[0], high[1] - low[1], high[2] - low[2]});
    if (!(extent_ > 0) || !std::isfinite(extent_)) return false;
    const int along_longest = std::max(1, static_cast<int>(std::cbrt(centers / kCentersPerCell)));
    size_ = extent_ / along_longest;
    inverse_size_ = along_longest / extent_;
    for (int axis = 0; axis < 3; ++axis) {
      low_[axis] = low[axis];
      cells_[axis] = std::min(along_longest, 1 + static_cast<int>((high[axis] - low[axis]) / size_));
    }
    // Counting sort by cell; within a cell, centers keep their index order.
    const int total = cells_[0] * cells_[1] * cells_[2];
    first_.assign(total + 1, 0);
    std::vector<int32_t> cell_of(centers);
    for (int k = 0; k < centers; ++k) {
      int cell[3];
      for (int axis = 0; axis < 3; ++axis) cell[axis] = cell_along(axis, coords[axis][k]);
      cell_of[k] = (cell[2] * cells_[1] + cell[1]) * cells_[0] + cell[0];
      ++first_[cell_of[k] + 1];
    }
    for (int c = 0; c < total; ++c) first_[c + 1] += first_[c];
    std::vector<int32_t> next(first_.begin(), first_.end() - 1);
    index_.resize(centers);
    x_.resize(centers);
    y_.resize(centers);
    z_.resize(centers);
    for (int k = 0; k < centers; ++k) {
      const int32_t slot = next[cell_of[k]]++;
      index_[slot] = k;
      x_[slot] = x[k];
      y_[slot] = y[k];
      z_[slot] = z[k];
    }
    return true;
  }

  // The number of the cell a point lies in (the nearest cell for points outside the grid).
  int home_cell(T px, T py, T pz) const {
    return (cell_along(2, pz) * cells_[1] + cell_along(1, py)) * cells_[0] + cell_along(0, px);
  }

  // order[0..points): the points' numbers sorted by home cell, so that neighbours share one
  // gathered neighbourhood. Coordinates are x[n], y[n], z[n].
  void sort_by_home(const T *x, const T *y, const T *z, int points, int32_t *order) const {
    std::vector<int32_t> home(points), first(first_.size(), 0);
    for (int n = 0; n < points; ++n) {
      home[n] = home_cell(x[n], y[n], z[n]);
      ++first[home[n] + 1];
    }
    for (size_t c = 1; c < first.size(); ++c) first[c] += first[c - 1];
    for (int n = 0; n < points; ++n) order[first[home[n]]++] = n;
  }

  // The three nearest centers of a finite point, equal to `three_nearest_plain`.
  element::Nearest3<T> nearest(T px, T py, T pz, Neighbourhood &hood) const {
    const T p[3] = {px, py, pz};
    const int home = home_cell(px, py, pz);
    if (hood.grid != this || hood.home != home) gather(home, 1, hood);
    // Widen the neighbourhood only when a center outside it could be nearer than the third
    // nearest inside (rare: near empty space, or points far outside the centers).
    T third;
    for (;;) {
      T *d = hood.distance.data();
      for (int j = 0; j < hood.count; ++j) d[j] = element::squared_distance(px, py, pz, hood.x[j], hood.y[j], hood.z[j]);
      third = third_smallest(d, hood.count);
      if (beyond_is_farther(p, hood.lo, hood.hi, third)) break;
      gather(home, hood.reach + 1, hood);
    }
    // Candidates: the centers no farther than the third nearest (ties included), visited in
    // index order as the plain loop visits them; the others cannot change its result. Few pass
    // (three, but for ties): a branch-free count over each block of kLanes (vectorized) skips
    // the blocks with none.
    std::pair<int32_t, T> *kept = hood.kept.data();
    int found = 0;
    for (int block = 0; block < hood.count; block += kLanes) {
      const T *d = hood.distance.data() + block;
      int hits = 0;
      for (int l = 0; l < kLanes; ++l) hits += d[l] <= third;
      if (hits == 0) continue;
      for (int l = 0; l < kLanes; ++l) {
        // Padding (distance infinity) passes only when fewer than three centers can: its
        // visit then changes nothing, as a center at infinity changes nothing in the plain loop.
        kept[found] = {hood.index[block + l], d[l]};
        found += d[l] <= third;
      }
    }
    // Index order by insertion (std::sort costs more for three).
    for (int j = 1; j < found; ++j) {
      const std::pair<int32_t, T> moving = kept[j];
      int to = j;
      for (; to > 0 && kept[to - 1].first > moving.first; --to) kept[to] = kept[to - 1];
      kept[to] = moving;
    }
    element::Nearest3<T> nearest = element::three_nn_start<T>();
    for (int j = 0; j < found; ++j) element::three_nn_visit(nearest, kept[j].second, static_cast<int>(kept[j].first));
    return nearest;
  }

 private:
  // Copies the centers of the cells within `reach` of cell `home` into `hood`, row by row.
  void gather(int home, int reach, Neighbourhood &hood) const {
    const int at[3] = {home % cells_[0], (home / cells_[0]) % cells_[1], home / (cells_[0] * cells_[1])};
    for (int axis = 0; axis < 3; ++axis) {
      hood.lo[axis] = std::max(at[axis] - reach, 0);
      hood.hi[axis] = std::min(at[axis] + reach, cells_[axis] - 1);
    }
    hood.grid = this;
    hood.home = home;
    hood.reach = reach;
    // Sized once for every center, plus a block of padding whose distances read as infinity.
    const size_t capacity = index_.size() + kLanes;
    if (hood.index.size() != capacity) {
      for (auto *v : {&hood.x, &hood.y, &hood.z}) v->resize(capacity);
      hood.index.assign(capacity, 0);
      hood.distance.assign(capacity, T(INFINITY));
      hood.kept.resize(capacity);
    }
    int count = 0;
    for (int cz = hood.lo[2]; cz <= hood.hi[2]; ++cz) {
      for (int cy = hood.lo[1]; cy <= hood.hi[1]; ++cy) {
        const int32_t row = (cz * cells_[1] + cy) * cells_[0];
        for (int32_t s = first_[row + hood.lo[0]]; s < first_[row + hood.hi[0] + 1]; ++s, ++count) {
          hood.x[count] = x_[s];
          hood.y[count] = y_[s];
          hood.z[count] = z_[s];
          hood.index[count] = index_[s];
        }
      }
    }
    std::fill(hood.distance.begin() + count, hood.distance.begin() + count + kLanes, T(INFINITY));
    hood.count = count;
  }

  // Keeps the three smallest values seen, a <= b <= c, without a branch.
  static void keep_three(T v, T &a, T &b, T &c) {
    const T v1 = std::max(v, a);
    a = std::min(v, a);
    const T v2 = std::max(v1, b);
    b = std::min(v1, b);
    c = std::min(v2, c);
  }
  // The third smallest of d[0..count) (infinity when count < 3); d reads as infinity up to the
  // next multiple of kLanes. Each of kLanes interleaved lanes keeps its own three smallest
  // (independent chains, which the compiler vectorizes), and the lanes are merged.
  static T third_smallest(const T *d, int count) {
    T a[kLanes], b[kLanes], c[kLanes];
    std::fill(a, a + kLanes, T(INFINITY));
    std::fill(b, b + kLanes, T(INFINITY));
    std::fill(c, c + kLanes, T(INFINITY));
    for (int j = 0; j < count; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) keep_three(d[j + l], a[l], b[l], c[l]);
    }
    // Merge the lanes' sorted triples pairwise, halving the lanes: the third smallest of two
    // sorted triples is the least of c1, c2, max(b1, a2) and max(a1, b2).
    for (int half = kLanes / 2; half > 0; half /= 2) {
      for (int l = 0; l < half; ++l) {
        const T a1 = a[l], b1 = b[l], c1 = c[l], a2 = a[l + half], b2 = b[l + half], c2 = c[l + half];
        a[l] = std::min(a1, a2);
        b[l] = std::min(std::min(b1, b2), std::max(a1, a2));
        c[l] = std::min(std::min(c1, c2), std::min(std::max(b1, a2), std::max(a1, b2)));
      }
    }
    return c[0];
  }

  // The cell along `axis` holding coordinate v, clamped to the grid (NaN gives 0).
  int cell_along(int axis, double v) const {
    const double cell = (v - low_[axis]) * inverse_size_;
    if (!(cell > 0)) return 0;  // truncation below is then floor
    return cell < cells_[axis] - 1 ? static_cast<int>(cell) : cells_[axis] - 1;
  }

  // Whether every center outside the box of cells lo..hi lies strictly farther than `third`
  // (a squared distance as the point measures it). True when the box covers the grid. The
  // bound is shrunk by a margin far above the rounding of the distances and of the cell
  // assignment, so a center it excludes can never tie with the third nearest.
  bool beyond_is_farther(const T p[3], const int lo[3], const int hi[3], T third) const {
    double gap = std::numeric_limits<double>::infinity();
    for (int axis = 0; axis < 3; ++axis) {
      if (lo[axis] > 0) gap = std::min(gap, p[axis] - (low_[axis] + lo[axis] * size_));
      if (hi[axis] < cells_[axis] - 1) gap = std::min(gap, low_[axis] + (hi[axis] + 1) * size_ - p[axis]);
    }
    if (gap == std::numeric_limits<double>::infinity()) return true;
    const double safe = gap * (1.0 - 1e-5) - 1e-12 * extent_;
    return safe > 0 && static_cast<double>(third) < safe * safe;
  }

  int cells_[3] = {1, 1, 1};
  double low_[3] = {0, 0, 0};
  double size_ = 1, inverse_size_ = 1, extent_ = 0;
  std::vector<int32_t> first_;  // centers of cell c: sorted slots first_[c] .. first_[c+1]-1
  std::vector<int32_t> index_;  // each slot's center index
  std::vector<T> x_, y_, z_;    // each slot's coordinates
};

}  // namespace cpu
}  // namespace lion_kernels
