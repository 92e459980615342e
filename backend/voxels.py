"""Blocky voxel guides: turning a shape into voxels, and voxels into surface points.

A voxel guide is what an artist blocks out by hand: a set of equal cubes on a regular lattice.
`voxelize` makes one from any shape (used to train the voxel encoder, and for demos), and
`voxel_surface_points` samples the outside of a guide so it can go through an encoder like any
other point cloud. Only faces that touch empty space count as surface: the face two occupied
voxels share is inside the guide, and points there would describe no visible geometry.

numpy only, no bpy and no torch, so the server and the training stage share it; the lattice
itself (backend/voxel_lattice.py) is the add-on's too.
"""
from typing import NamedTuple, Union

import numpy as np

from backend import voxel_lattice
from backend.voxel_lattice import FACE_DIRECTIONS, MAX_RESOLUTION

SeedLike = Union[int, np.random.Generator, None]


class VoxelGuide(NamedTuple):
    """Occupied voxels of a shape.

    centers:    float64 [V, 3], the centre of each occupied voxel, in the shape's frame.
    voxel_size: float, the edge length of every voxel.
    """

    centers: np.ndarray
    voxel_size: float


def voxelize(points_or_mesh, resolution: int, filled: bool = False, seed: SeedLike = 0) -> VoxelGuide:
    """The voxels a shape touches, on a lattice of `resolution` cells along its longest side.

    The lattice is the shape's bounding cube (backend/voxel_lattice.py), split into
    `resolution`³ cells. A cell is occupied when the
    shape's surface passes through it; with `filled`, cells enclosed by occupied ones (the
    inside of a closed shape) are occupied too, so the guide is solid like a hand-made one.

    Args:
        points_or_mesh: the shape, either points float [P, 3], or a triangle mesh given as a
            (vertices float [V, 3], faces int [F, 3]) pair or any object with `vertices` and
            `faces` attributes (a trimesh.Trimesh). A mesh is sampled densely by area first.
        resolution: cells along the longest side, 1..256.
        filled: also occupy the cells enclosed by the surface.
        seed: seeds the mesh sampling (int, numpy Generator, or None); unused for points.

    Returns:
        VoxelGuide(centers float64 [V, 3] in the input's frame, ordered by lattice index
        (x, then y, then z), voxel_size float).

    Raises:
        ValueError: naming the argument, for empty or mis-shaped input, NaN or infinite
            coordinates, a shape with no size, or a resolution outside 1..MAX_RESOLUTION.
    """
    if not isinstance(resolution, (int, np.integer)) or isinstance(resolution, bool):
        raise ValueError(f"resolution must be an integer, got {resolution!r}")
    if not 1 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be between 1 and {MAX_RESOLUTION}, got {resolution}")
    points, faces = _shape_arrays(points_or_mesh)

    edge = float((points.max(axis=0) - points.min(axis=0)).max())
    if not edge > 1e-9 * max(1.0, float(np.abs(points).max())):
        raise ValueError("points_or_mesh: the shape has no size (all its points coincide)")
    origin, voxel_size = voxel_lattice.bounding_lattice(points, resolution)

    if faces is not None:
        points = voxel_lattice.mesh_surface_points(points, faces, voxel_size, seed)
    occupied = voxel_lattice.occupied_cells(points, origin, voxel_size, resolution)
    if filled:
        occupied = voxel_lattice.fill_enclosed(occupied)

    centers = origin + (np.argwhere(occupied) + 0.5) * voxel_size
    return VoxelGuide(centers.astype(np.float64), voxel_size)


def voxel_surface_points(voxel_centers, voxel_size: float, count: int, seed: SeedLike = 0) -> np.ndarray:
    """Points drawn uniformly over the outside of a union of equal voxel cubes.

    Every voxel is an axis-aligned cube of edge `voxel_size` around its centre. A cube face is
    outside when no other voxel sits across it; faces shared by two voxels are inside the
    guide and receive no points. All faces have the same area, so each point picks an outside
    face uniformly and then a uniform position on it. Duplicate centres count once.

    Args:
        voxel_centers: float [V, 3], the centres, on a common lattice of spacing `voxel_size`
            (within 1% of a voxel).
        voxel_size: float > 0, the cube edge length.
        count: number of points, >= 1.
        seed: int seed, a numpy Generator, or None for fresh entropy; the same seed and guide
            always give the same points.

    Returns:
        float64 [count, 3], points on the outside faces, in the frame of `voxel_centers` (float64, so
        that a guide far from the origin keeps its shape).

    Raises:
        ValueError: naming the argument, for empty or mis-shaped centres, NaN or infinite
            values, a size that is not a positive finite number, centres off a common
            lattice, or count < 1.
    """
    centers = _finite_points(voxel_centers, "voxel_centers", "the guide has no voxels")
    if isinstance(voxel_size, bool) or not isinstance(voxel_size, (int, float, np.number)):
        raise ValueError(f"voxel_size must be a number, got {voxel_size!r}")
    voxel_size = float(voxel_size)
    if not (np.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size}")
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    origin = centers.min(axis=0)
    steps = (centers - origin) / voxel_size
    cells = np.round(steps).astype(np.int64)
    if np.abs(steps - cells).max() > 0.01:
        raise ValueError(
            "voxel_centers are not on a common lattice of spacing voxel_size: every centre must "
            "be a whole number of voxels away from the others"
        )
    cells = np.unique(cells, axis=0)

    face_cells, face_directions = voxel_lattice.exposed_faces(cells)
    chosen = rng.integers(0, len(face_cells), size=count)
    directions = FACE_DIRECTIONS[face_directions[chosen]]
    # On a face, the coordinate along its normal is fixed at half a voxel out; the two
    # others spread uniformly across the face.
    offsets = rng.uniform(-0.5, 0.5, size=(count, 3))
    offsets = np.where(directions != 0, 0.5 * directions, offsets)
    return origin + (face_cells[chosen] + offsets) * voxel_size


def _shape_arrays(points_or_mesh):
    """(points float64 [P, 3], faces int64 [F, 3] or None) from points, a pair, or a mesh object."""
    if hasattr(points_or_mesh, "vertices") and hasattr(points_or_mesh, "faces"):
        vertices, faces = points_or_mesh.vertices, points_or_mesh.faces
    elif isinstance(points_or_mesh, (tuple, list)) and len(points_or_mesh) == 2:
        vertices, faces = points_or_mesh
    else:
        vertices, faces = points_or_mesh, None
    points = _finite_points(vertices, "points_or_mesh", "the shape has no points")
    if faces is None:
        return points, None
    faces = np.asarray(faces)
    if faces.size == 0:
        raise ValueError("points_or_mesh: the mesh has no faces")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"points_or_mesh: faces must be integer triangles [F, 3], got {faces.dtype} {list(faces.shape)}")
    if faces.min() < 0 or faces.max() >= len(points):
        raise ValueError(f"points_or_mesh: faces refer to vertices the mesh does not have (it has {len(points)})")
    return points, faces.astype(np.int64)


def _finite_points(values, name, empty_reason):
    """float64 [P, 3] copy of `values`; ValueError naming `name` when mis-shaped, empty,
    not numeric, NaN or infinite."""
    points = np.asarray(values)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape [P, 3], got {list(points.shape)}")
    if len(points) == 0:
        raise ValueError(f"{name} is empty: {empty_reason}")
    if not np.issubdtype(points.dtype, np.number):
        raise ValueError(f"{name} must hold numbers, got dtype {points.dtype}")
    points = points.astype(np.float64)
    if not np.isfinite(points).all():
        raise ValueError(f"{name} holds NaN or infinite coordinates")
    return points
