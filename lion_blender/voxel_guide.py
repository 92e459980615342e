"""Blocky voxel guides on the add-on side: voxelize a mesh, build the guide's cube faces, and read
the voxels back from a (possibly hand-edited) guide mesh. numpy only, no bpy, no scipy.

The lattice follows the backend's convention (backend/voxels.py): the shape's bounding cube,
centred on its bounding box, with an edge as long as the box's longest side, split into
`resolution` cells per side.
"""
import numpy as np

from .wire import op_schema

MAX_RESOLUTION = op_schema.GUIDE_RESOLUTION.maximum
# Samples per voxel-face area of surface: enough that every cell a triangle crosses gets one.
_SAMPLES_PER_CELL_FACE = 16
_MIN_SAMPLES, _MAX_SAMPLES = 20_000, 3_000_000

# Per direction: the lattice step and the four corners of that face of a unit cell, ordered
# counter-clockwise seen from outside so the quad's normal points away from the cell.
_FACES = (
    ((1, 0, 0), ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1))),
    ((-1, 0, 0), ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0))),
    ((0, 1, 0), ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0))),
    ((0, -1, 0), ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1))),
    ((0, 0, 1), ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1))),
    ((0, 0, -1), ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0))),
)


def voxelize_mesh(vertices, faces, resolution, seed=0):
    """The solid voxels of a triangle mesh: cells its surface crosses plus the cells they enclose.

    vertices: float [V, 3]; faces: int [F, 3] (may be empty: then only the vertices count).
    resolution: cells along the bounding box's longest side, 1..MAX_RESOLUTION.
    Returns (cells int32 [M, 3] lattice indices, origin float64 [3] the lattice's low corner,
    voxel_size float): cell (i, j, k) spans origin + size·(i..i+1, j..j+1, k..k+1).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"vertices must have shape [V, 3] with V > 0, got {vertices.shape}")
    if not isinstance(resolution, int) or not 1 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be an integer in 1..{MAX_RESOLUTION}, got {resolution!r}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("faces must index vertices")
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    extent = float((high - low).max())
    if extent <= 0.0:
        raise ValueError("the mesh has no extent: all its vertices are at one point")
    size = extent / resolution
    origin = (low + high) / 2.0 - extent / 2.0
    points = np.concatenate([vertices, _surface_samples(vertices, faces, size, seed)])
    cells = np.clip(np.floor((points - origin) / size).astype(np.int64), 0, resolution - 1)
    occupied = np.zeros((resolution,) * 3, dtype=bool)
    occupied[cells[:, 0], cells[:, 1], cells[:, 2]] = True
    solid = occupied | ~_reachable_from_outside(occupied)
    return np.argwhere(solid).astype(np.int32), origin, size


def _surface_samples(vertices, faces, size, seed):
    if len(faces) == 0:
        return np.empty((0, 3))
    corners = vertices[faces]
    edge_a, edge_b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    areas = 0.5 * np.linalg.norm(np.cross(edge_a, edge_b), axis=1)
    total = float(areas.sum())
    if total <= 0.0:
        return corners.reshape(-1, 3)
    count = int(np.clip(_SAMPLES_PER_CELL_FACE * total / size**2, _MIN_SAMPLES, _MAX_SAMPLES))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(faces), size=count, p=areas / total)
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1.0  # fold the unit square onto the triangle: uniform by area
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    return corners[chosen, 0] + u[:, None] * edge_a[chosen] + v[:, None] * edge_b[chosen]


def _reachable_from_outside(occupied):
    """Empty cells connected (6-neighbourhood) to the space around the grid."""
    padded = np.pad(~occupied, 1, constant_values=True)
    outside = np.zeros_like(padded)
    outside[0, :, :] = outside[-1, :, :] = True
    outside[:, 0, :] = outside[:, -1, :] = True
    outside[:, :, 0] = outside[:, :, -1] = True
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown[:, :, 1:] |= outside[:, :, :-1]
        grown[:, :, :-1] |= outside[:, :, 1:]
        grown &= padded
        if np.array_equal(grown, outside):
            return outside[1:-1, 1:-1, 1:-1]
        outside = grown


def guide_mesh(cells, origin, size):
    """The outside faces of the voxels `cells` (int [M, 3]) as a quad mesh with shared corners.

    Faces between two occupied cells are left out: the guide is a closed blocky surface.
    Returns (vertices float32 [V, 3], quads int32 [Q, 4]) in the frame of `origin` float [3];
    quads are wound counter-clockwise seen from outside.
    """
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
    if len(cells) == 0:
        raise ValueError("cells must hold at least one voxel")
    shifted = cells - cells.min(axis=0) + 1  # room for an empty border in the lookup grid
    occupied = np.zeros(tuple(shifted.max(axis=0) + 2), dtype=bool)
    occupied[shifted[:, 0], shifted[:, 1], shifted[:, 2]] = True
    corner_sets = []
    for step, corners in _FACES:
        neighbours = shifted + step
        exposed = cells[~occupied[neighbours[:, 0], neighbours[:, 1], neighbours[:, 2]]]
        corner_sets.append(exposed[:, None, :] + np.array(corners)[None])
    lattice_corners = np.concatenate(corner_sets).reshape(-1, 3)
    unique, quads = np.unique(lattice_corners, axis=0, return_inverse=True)
    vertices = np.asarray(origin, dtype=np.float64) + unique * float(size)
    return vertices.astype(np.float32), quads.reshape(-1, 4).astype(np.int32)


def voxels_from_faces(face_centers, face_normals, origin, size):
    """The voxels behind the outward faces of a guide mesh, as their centres.

    Each face of a guide closes one voxel, which lies half a voxel behind the face, so a guide
    the artist edited (cubes extruded, duplicated or deleted) still reads as voxels.
    face_centers, face_normals: float [Q, 3] in the guide's frame; origin: float [3], the
    guide's lattice corner; size: the voxel edge.
    Returns the distinct voxel centres float32 [M, 3].
    """
    face_centers = np.asarray(face_centers, dtype=np.float64).reshape(-1, 3)
    face_normals = np.asarray(face_normals, dtype=np.float64).reshape(-1, 3)
    if len(face_centers) == 0 or face_centers.shape != face_normals.shape:
        raise ValueError("face_centers and face_normals must have the same shape [Q, 3], Q > 0")
    if not size > 0.0:
        raise ValueError(f"size must be positive, got {size!r}")
    origin = np.asarray(origin, dtype=np.float64)
    behind = face_centers - face_normals * (size / 2.0)
    cells = np.unique(np.floor((behind - origin) / size).astype(np.int64), axis=0)
    return (origin + (cells + 0.5) * size).astype(np.float32)
