"""Area-weighted random points on the surface of a triangle mesh.

Used by the datasets to turn meshes into point sets and by the server to turn an artist's
mesh into the points the model encodes, so every error message is written for an artist.
"""
from typing import NamedTuple, Union

import numpy as np

SeedLike = Union[int, np.random.Generator, None]


class SurfaceSamples(NamedTuple):
    """Points sampled on a mesh surface.

    points:     float32 [count, 3], positions on the surface.
    normals:    float32 [count, 3], unit normal of the triangle each point lies on
                (orientation follows the triangle's winding).
    face_index: int64 [count], the triangle each point was drawn from.
    """

    points: np.ndarray
    normals: np.ndarray
    face_index: np.ndarray


def sample_surface(vertices, faces, count: int, seed: SeedLike = 0) -> SurfaceSamples:
    """Draw `count` points uniformly over the surface area of a triangle mesh.

    Triangles are chosen with probability proportional to their area, then a point is drawn
    uniformly inside the chosen triangle, so the point density is the same everywhere on the
    surface regardless of how finely each part is tessellated.

    Args:
        vertices: float array [V, 3] (any float dtype; computed in float64).
        faces: integer array [F, 3] of vertex indices (triangles only).
        count: number of points to draw, >= 1.
        seed: int seed, a numpy Generator, or None for fresh entropy. The same seed and mesh
            always give the same points.

    Returns:
        SurfaceSamples(points float32 [count, 3], normals float32 [count, 3],
        face_index int64 [count]).

    Raises:
        ValueError: naming the argument, for wrong shapes, a mesh without faces, face indices
            that point to missing vertices, NaN/infinite coordinates, or a mesh whose
            triangles all have zero area.
    """
    vertices, faces = _validated_mesh(vertices, faces)
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    double_areas = triangle_double_areas(vertices, faces)
    total = double_areas.sum()
    if not np.isfinite(total) or total <= 0.0:
        raise ValueError(
            "faces: the mesh has no surface area (every triangle is degenerate: its corners "
            "coincide or lie on a line)"
        )

    cumulative = np.cumsum(double_areas)
    face_index = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    # Rounding can put a draw exactly on the last boundary; keep it on a triangle with area.
    face_index = np.minimum(face_index, np.flatnonzero(double_areas > 0)[-1])

    # Only the chosen triangles' corners are gathered: a mesh of millions of triangles never
    # holds a [F, 3, 3] array.
    corners = vertices[faces[face_index]]  # [count, 3 corners, 3]
    edge_a, edge_b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    # Uniform barycentric coordinates: fold the unit square onto the triangle.
    u, v = rng.random(count), rng.random(count)
    outside = u + v > 1.0
    u[outside], v[outside] = 1.0 - u[outside], 1.0 - v[outside]
    points = corners[:, 0] + u[:, None] * edge_a + v[:, None] * edge_b

    cross = np.cross(edge_a, edge_b)
    normals = cross / np.linalg.norm(cross, axis=1, keepdims=True)  # chosen triangles have area
    return SurfaceSamples(points.astype(np.float32), normals.astype(np.float32), face_index.astype(np.int64))


# Triangles per slice of the area computation: bounds its temporary arrays to about 200 MB.
_AREA_CHUNK = 1 << 20


def triangle_double_areas(vertices, faces):
    """Twice the area of each triangle, float64 [F], computed in slices so that memory stays
    bounded for any number of triangles (`vertices` float64 [V, 3], `faces` int [F, 3])."""
    areas = np.empty(len(faces))
    for start in range(0, len(faces), _AREA_CHUNK):
        corners = vertices[faces[start:start + _AREA_CHUNK]]
        areas[start:start + _AREA_CHUNK] = np.linalg.norm(
            np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    return areas


def sample_surface_points(vertices, faces, count: int, seed: SeedLike = 0, world: bool = False) -> np.ndarray:
    """Like `sample_surface` but returns only the points, float32 [count, 3]; with `world`,
    float64, drawn relative to the mesh's centre, so that a mesh far from the origin (where
    float32's spacing is coarse) keeps its detail. The same draws either way."""
    if not world:
        return sample_surface(vertices, faces, count, seed).points
    vertices = np.asarray(vertices)
    center = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0 if vertices.ndim == 2 and len(vertices) else 0.0
    return sample_surface(vertices - center, faces, count, seed).points + np.asarray(center, np.float64)


def _validated_mesh(vertices, faces):
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape [V, 3], got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.number):
        raise ValueError(f"vertices must be numeric, got dtype {vertices.dtype}")
    if len(vertices) == 0:
        raise ValueError("vertices: the mesh has no vertices")
    if faces.ndim != 2 or faces.shape[1] != 3:
        if faces.size == 0:
            raise ValueError("faces: the mesh has no faces (a point cloud or loose edges have no surface to sample)")
        raise ValueError(f"faces must have shape [F, 3] (triangles), got {faces.shape}")
    if len(faces) == 0:
        raise ValueError("faces: the mesh has no faces (a point cloud or loose edges have no surface to sample)")
    if not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(
            f"faces refer to vertex {faces.max() if faces.max() >= len(vertices) else faces.min()}, "
            f"but the mesh has only {len(vertices)} vertices"
        )
    vertices = vertices.astype(np.float64, copy=False)
    if not np.isfinite(vertices).all():
        bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise ValueError(f"vertices: {bad} vertex positions are NaN or infinite")
    return vertices, faces
