"""Artists' geometry in, the model's normalized space inside, the same frame out.

An input shape arrives in world space (any position, size and orientation) as a triangle mesh
or as points. `ShapeFrame` maps it into the model's space: optionally through the object's
4x4 matrix into its local frame (so a rotated object gives rotated results), then centred on
its bounding box and scaled so its longest half-extent matches the typical training shape's.
Results go back through the inverse map, into the frame the input came from.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from backend.data.sampling import sample_surface_points
from backend.op_schema import MAX_TRIANGLES, MAX_VERTICES


class GeometryError(ValueError):
    """The geometry cannot be used; the message says why in an artist's words."""


def validate_vertices(vertices, name="vertices"):
    """float64 [V, 3] copy of `vertices`, refusing empty, non-finite or mis-shaped input."""
    array = np.asarray(vertices)
    if array.ndim != 2 or array.shape[1] != 3:
        raise GeometryError(f"{name} must be an array of shape [V, 3], got shape {list(array.shape)}")
    if len(array) == 0:
        raise GeometryError(f"the {name} are empty: the object has no geometry")
    if len(array) > MAX_VERTICES:
        raise GeometryError(f"{len(array):,} {name} is more than the {MAX_VERTICES:,} this backend accepts")
    if not np.issubdtype(array.dtype, np.number):
        raise GeometryError(f"{name} must be numbers, got {array.dtype}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise GeometryError(f"{int(bad.sum())} of the {name} are NaN or infinite (first at index {int(np.argmax(bad))})")
    return array


@dataclass
class ShapeFrame:
    """model_point = ((local_point - center) / half_extent) * model_half_extent, where
    local_point = inverse(matrix) @ world_point. `matrix` None means local = world."""

    center: np.ndarray
    half_extent: float
    model_half_extent: float
    matrix: Optional[np.ndarray] = None

    @classmethod
    def fit(cls, points, model_half_extent, matrix=None):
        """The frame of a shape given as world-space points float [P, 3]."""
        matrix = None if matrix is None else _validate_matrix(matrix)
        local = np.asarray(points, np.float64)
        local = _apply(np.linalg.inv(matrix), local) if matrix is not None else local
        low, high = local.min(axis=0), local.max(axis=0)
        half_extent = float((high - low).max() / 2)
        if not half_extent > 1e-9 * max(1.0, float(np.abs(local).max())):
            raise GeometryError("the shape has no size: all its points coincide")
        return cls((low + high) / 2, half_extent, float(model_half_extent), matrix)

    @classmethod
    def placed(cls, center, half_extent, model_half_extent, matrix=None):
        """The frame of a new shape: centred at `center` with longest half-extent `half_extent`
        in the frame of `matrix` (None: world), e.g. to stand a Y-up model's shapes upright in
        a Z-up scene."""
        return cls(np.asarray(center, np.float64), float(half_extent), float(model_half_extent),
                   None if matrix is None else _validate_matrix(matrix))

    def world_to_local(self, points):
        points = np.asarray(points, np.float64)
        return _apply(np.linalg.inv(self.matrix), points) if self.matrix is not None else points

    def local_to_world(self, points):
        points = np.asarray(points, np.float64)
        return _apply(self.matrix, points) if self.matrix is not None else points

    def to_model(self, points):
        """World float [..., 3] -> model space float32 [..., 3]."""
        local = self.world_to_local(points)
        return ((local - self.center) / self.half_extent * self.model_half_extent).astype(np.float32)

    def to_world(self, points):
        """Model space [..., 3] -> world float64 [..., 3], the inverse of to_model (float64: a
        shape far from the origin keeps its detail)."""
        local = np.asarray(points, np.float64) / self.model_half_extent * self.half_extent + self.center
        return self.local_to_world(local)

    def blend(self, other, s):
        """The placement a fraction `s` of the way from this frame to `other`, in this frame's
        orientation: centres and sizes move linearly."""
        other_center = self.world_to_local(other.local_to_world(other.center))
        return ShapeFrame((1 - s) * self.center + s * other_center,
                          (1 - s) * self.half_extent + s * other.half_extent, self.model_half_extent, self.matrix)


def shape_points(vertices, faces=None, count=2048, seed=0):
    """Points on the input shape, world space float64 [count, 3].

    With faces (int [F, 3]) the surface is sampled by area; without, `vertices` are the points
    (resampled to `count`, with repetition when there are fewer).
    """
    vertices = validate_vertices(vertices)
    if faces is None or len(faces) == 0:
        if faces is not None and len(vertices) < 3:
            raise GeometryError("the mesh has no faces and too few vertices to use as points")
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(len(vertices))[:count] if len(vertices) >= count else rng.integers(0, len(vertices), count)
        points = vertices[chosen]
        _refuse_lines(points)
        return points
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise GeometryError(f"faces must be integers of shape [F, 3], got {faces.dtype} {list(faces.shape)}")
    if len(faces) > MAX_TRIANGLES:
        raise GeometryError(f"the mesh has {len(faces):,} triangles, more than the {MAX_TRIANGLES:,} this backend accepts; "
                            "decimate it first")
    try:
        return sample_surface_points(vertices, faces, count, seed=seed, world=True)
    except ValueError as error:
        raise GeometryError(str(error)) from None


def _refuse_lines(points):
    """A shape given as points must spread over a surface at least: points that all lie on one
    line (two vertices, an edge loop along an axis) describe no shape the model can follow."""
    centered = points - points.mean(axis=0)
    spread = np.linalg.svd(centered, compute_uv=False)
    if spread[0] == 0:
        return  # all one point: ShapeFrame.fit says the shape has no size
    if not spread[1] > 1e-6 * spread[0]:
        raise GeometryError(f"the {len(np.unique(points, axis=0))} distinct points lie on one line: "
                            "there is no shape to follow (use a mesh with faces, or more points)")


def _validate_matrix(matrix):
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise GeometryError(f"frame must be a finite 4x4 matrix, got shape {list(matrix.shape)}")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise GeometryError("frame matrix is singular (an object scaled to zero?)")
    return matrix


def _apply(matrix, points):
    points = np.asarray(points, np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]
