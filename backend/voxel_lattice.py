"""The lattice voxel guides live on, for the add-on and the backend alike.

A shape's lattice is its bounding cube: centred on its bounding box, with an edge as long as the
box's longest side, split into `resolution` cells per side. Cell (i, j, k) spans
origin + size·(i..i+1, j..j+1, k..k+1). The add-on voxelizes meshes and draws guides on it;
the backend voxelizes shapes to train the voxel encoder and samples the outside of guides.

numpy only, and only relative imports: the add-on imports this module from the backend package
its extension carries (no torch, no scipy, no bpy there).
"""
import numpy as np

from .data.sampling import sample_surface_points, triangle_double_areas
from .op_schema import GUIDE_RESOLUTION

# The finest guide the add-on and the command line make; its dense occupancy grid is 2.1 MB of booleans.
MAX_RESOLUTION = GUIDE_RESOLUTION.maximum

# The six face directions of a cell, as lattice steps, in the order every face list here uses.
FACE_DIRECTIONS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.int64)

# Mesh surfaces are sampled densely enough that every cell a triangle crosses almost surely
# receives a point: this many samples per cell-face area of surface.
_SAMPLES_PER_CELL_FACE = 16
_MIN_MESH_SAMPLES, _MAX_MESH_SAMPLES = 20_000, 4_000_000


def bounding_lattice(points, resolution):
    """(origin float64 [3], cell size float) of the lattice of `resolution` cells along the
    longest side of the bounding box of `points` float64 [P, 3] (which must have some extent)."""
    low, high = points.min(axis=0), points.max(axis=0)
    edge = float((high - low).max())
    return (low + high) / 2 - edge / 2, edge / resolution


def mesh_surface_points(vertices, faces, size, seed=0):
    """Points on a triangle mesh dense enough to touch every cell of edge `size` that it crosses:
    area-weighted surface samples plus the vertices themselves, float64 [P, 3]."""
    area = 0.5 * triangle_double_areas(vertices, faces).sum() if len(faces) else 0.0
    if area <= 0.0:  # no surface (no faces, or all degenerate): the vertices are all there is
        return vertices
    count = int(np.clip(np.ceil(area / size**2 * _SAMPLES_PER_CELL_FACE), _MIN_MESH_SAMPLES, _MAX_MESH_SAMPLES))
    return np.concatenate([sample_surface_points(vertices, faces, count, seed, world=True), vertices])


def occupied_cells(points, origin, size, resolution):
    """bool [resolution]³: the cells holding at least one of `points` (the edges clamped in)."""
    cells = np.clip(np.floor((points - origin) / size).astype(np.int64), 0, resolution - 1)
    occupied = np.zeros((resolution,) * 3, dtype=bool)
    occupied[cells[:, 0], cells[:, 1], cells[:, 2]] = True
    return occupied


def fill_enclosed(occupied):
    """`occupied` plus every empty cell that no path of face-neighbouring empty cells joins to the
    space around the grid: the inside of a closed surface, so a guide is solid like a hand-made one."""
    padded_empty = np.pad(~occupied, 1, constant_values=True)
    outside = np.zeros_like(padded_empty)
    outside[0, :, :] = outside[-1, :, :] = True
    outside[:, 0, :] = outside[:, -1, :] = True
    outside[:, :, 0] = outside[:, :, -1] = True
    while True:  # grow the outside one face step at a time through empty cells
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown[:, :, 1:] |= outside[:, :, :-1]
        grown[:, :, :-1] |= outside[:, :, 1:]
        grown &= padded_empty
        if np.array_equal(grown, outside):
            return ~outside[1:-1, 1:-1, 1:-1]
        outside = grown


def exposed_faces(cells):
    """The faces of lattice cells int [V, 3] (unique) that no other cell covers: (cell int64 [F, 3],
    direction index int64 [F] into FACE_DIRECTIONS), grouped by direction in that order. Sparse
    cells spread far apart cost no dense grid."""
    cells = np.asarray(cells, dtype=np.int64)
    # Pack each cell into one int64 key so a neighbour lookup is a sorted search.
    low = cells.min(axis=0) - 1
    span = cells.max(axis=0) - low + 2
    keys = np.sort(_cell_keys(cells, low, span))
    face_cells, face_directions = [], []
    for direction_index, direction in enumerate(FACE_DIRECTIONS):
        neighbour_keys = _cell_keys(cells + direction, low, span)
        slot = np.minimum(np.searchsorted(keys, neighbour_keys), len(keys) - 1)
        exposed = keys[slot] != neighbour_keys
        face_cells.append(cells[exposed])
        face_directions.append(np.full(int(exposed.sum()), direction_index, dtype=np.int64))
    return np.concatenate(face_cells), np.concatenate(face_directions)


def _cell_keys(cells, low, span):
    shifted = cells - low
    return (shifted[:, 0] * span[1] + shifted[:, 1]) * span[2] + shifted[:, 2]
