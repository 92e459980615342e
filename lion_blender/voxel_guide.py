"""Blocky voxel guides on the add-on side: voxelize a mesh, build the guide's cube faces, and read
the voxels back from a (possibly hand-edited) guide mesh. numpy only, no bpy.

The lattice is the backend's (backend/voxel_lattice.py, carried in the extension): the shape's
bounding cube, centred on its bounding box, with an edge as long as the box's longest side,
split into `resolution` cells per side.
"""
import numpy as np

from .wire import voxel_lattice

MAX_RESOLUTION = voxel_lattice.MAX_RESOLUTION

# Per lattice direction (voxel_lattice.FACE_DIRECTIONS, in its order): the four corners of that
# face of a unit cell, counter-clockwise seen from outside so the quad's normal points away.
_FACE_CORNERS = np.array([
    ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)),
    ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)),
    ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)),
    ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)),
    ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)),
    ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)),
], dtype=np.int64)


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
    if float((vertices.max(axis=0) - vertices.min(axis=0)).max()) <= 0.0:
        raise ValueError("the mesh has no extent: all its vertices are at one point")
    origin, size = voxel_lattice.bounding_lattice(vertices, resolution)
    points = voxel_lattice.mesh_surface_points(vertices, faces, size, seed)
    solid = voxel_lattice.fill_enclosed(voxel_lattice.occupied_cells(points, origin, size, resolution))
    return np.argwhere(solid).astype(np.int32), origin, size


def guide_mesh(cells, origin, size):
    """The outside faces of the voxels `cells` (int [M, 3]) as a quad mesh with shared corners.

    Faces between two occupied cells are left out: the guide is a closed blocky surface.
    Returns (vertices float32 [V, 3], quads int32 [Q, 4]) in the frame of `origin` float [3];
    quads are wound counter-clockwise seen from outside.
    """
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
    if len(cells) == 0:
        raise ValueError("cells must hold at least one voxel")
    face_cells, directions = voxel_lattice.exposed_faces(np.unique(cells, axis=0))
    lattice_corners = (face_cells[:, None, :] + _FACE_CORNERS[directions]).reshape(-1, 3)
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
