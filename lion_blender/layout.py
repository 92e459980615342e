"""The add-on's arithmetic that needs no Blender: the frame sent to the backend, where results
go beside their input, and the parameters, arrays and custom properties of requests and results.
(The similarity an artist sets is sent as is: the backend maps it onto the model's own steps.)

Imports numpy only, so it is tested in the backend's environment, in seconds
(tests/backend/test_addon_layout.py); actions.py joins it to Blender's objects.
"""
import numpy as np

# Gap between laid-out results, as a fraction of the source's width.
LAYOUT_GAP = 0.25

# LION models are trained Y-up (ShapeNet's convention, and our procedural data's); Blender is
# Z-up. The backend works in the frame of the matrix it is sent, so sending
# matrix_world @ BLENDER_FROM_MODEL shows it an upright object upright: model (x, y, z) is
# Blender (x, -z, y), i.e. model up (+y) is Blender up (+z), model front (+z) Blender front (-y).
BLENDER_FROM_MODEL = np.array([[1.0, 0.0, 0.0, 0.0],
                               [0.0, 0.0, -1.0, 0.0],
                               [0.0, 1.0, 0.0, 0.0],
                               [0.0, 0.0, 0.0, 1.0]])


def model_frame(matrix_world):
    """The matrix sent to the backend for an object with `matrix_world`: float64 [4, 4]."""
    return np.asarray(matrix_world, np.float64) @ BLENDER_FROM_MODEL


def translation(offset):
    """The affine float64 [4, 4] that moves by `offset` float [3]."""
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def transform(points, matrix):
    """points float [P, 3] through the affine float64 [4, 4] matrix -> float64 [P, 3]."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def layout_offsets(width, count, start=1):
    """World-space X offsets of `count` results laid out beside a source `width` wide."""
    step = max(width, 1e-3) * (1.0 + LAYOUT_GAP)
    return [np.array([step * (start + k), 0.0, 0.0]) for k in range(count)]


def point_radius(points):
    """A display radius that makes N points read as a surface: about half their spacing."""
    points = np.asarray(points).reshape(-1, 3)
    extent = float(np.ptp(points, axis=0).max()) if len(points) else 1.0
    return max(extent, 1e-6) * 0.6 / max(len(points), 1) ** 0.5


class Source:
    """Where the results of one input go: beside it, in its frame (no bpy object kept, so the
    artist may delete or rename the input while the job runs)."""

    def __init__(self, name, matrix, world_points):
        self.name = name
        self.matrix = matrix  # float64 [4, 4], the input's matrix_world
        low, high = world_points.min(axis=0), world_points.max(axis=0)
        self.width = float(high[0] - low[0])

    def result_matrix(self, offset):
        """The input's frame moved by the world-space `offset` float [3]: float64 [4, 4]."""
        matrix = self.frame()
        matrix[:3, 3] += offset
        return matrix

    def frame(self):
        """The input's matrix, with world axes in place of a flattened (singular) one."""
        matrix = self.matrix.copy()
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            matrix[:3, :3] = np.eye(3)
        return matrix

    def to_local(self, world_points):
        """World points float [P, 3] at the input, in its frame: float32 [P, 3]. An object with
        these coordinates and `result_matrix(offset)` shows them moved by `offset`."""
        return transform(world_points, np.linalg.inv(self.frame())).astype(np.float32)


def generation_params(settings):
    """The request parameters every generating action shares, from its settings."""
    params = {"seed": int(settings.seed), "steps": int(settings.steps), "output": settings.output.lower()}
    if settings.model:
        params["model"] = settings.model
    return params


def result_properties(op, header, settings, source=""):
    """The custom properties of a result object: what the backend reports it used (its reply
    `header`, e.g. the diffusion step `tau` a similarity meant), else what was asked."""
    properties = {"op": op, "seed": int(header.get("seed", settings.seed)),
                  "steps": int(header.get("steps", settings.steps)), "model": str(header.get("model", settings.model))}
    if "tau" in header:
        properties["tau"] = int(header["tau"])
    if "category" in header:
        properties["category"] = str(header["category"])
    if source:
        properties["source"] = source
    return properties


def reply_shapes(header, arrays):
    """The shapes of a generating op's reply, in order: (world vertices float [P, 3], triangles
    int [F, 3] or None for points). With output "mesh" each shape is its reconstructed mesh
    (`mesh_vertices_k`, `mesh_faces_k`), else the k-th of `points` [K, N, 3]."""
    points = arrays.get("points")
    if points is None or points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"the reply carries no points [K, N, 3]: {sorted(arrays)}")
    if header.get("output") != "mesh":
        return [(shape, None) for shape in points]
    missing = [f"mesh_{part}_{k}" for k in range(len(points)) for part in ("vertices", "faces")
               if f"mesh_{part}_{k}" not in arrays]
    if missing:
        raise ValueError(f"the reply's meshes are incomplete: no {', '.join(missing)}")
    return [(arrays[f"mesh_vertices_{k}"], arrays[f"mesh_faces_{k}"]) for k in range(len(points))]


def shape_arrays(vertices, faces, matrix, suffix=""):
    """The arrays of one input shape in a request: its world vertices, its faces (if any) and
    the model frame of its matrix."""
    arrays = {f"vertices{suffix}": vertices, f"matrix{suffix}": model_frame(matrix)}
    if len(faces):
        arrays[f"faces{suffix}"] = faces
    return arrays
