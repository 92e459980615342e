"""Shapes in and out of a request: world-space meshes and points to the model's normalized space
(through backend/geometry.py's ShapeFrame) and results back to world space, as points or as
meshes reconstructed with Shape As Points. Geometry errors are left to `ops.run`."""
import numpy as np

from backend import model_store
from backend.serve.job import RequestError


def model_half_extent(metadata):
    """Half the longest side of a typical training shape in the model's normalized space."""
    return float(metadata.get("typical_half_extent") or 1.0)


def input_points(arrays, count, seed, suffix=""):
    """(world-space points float64 [count, 3] on the shape sent as vertices/faces, its matrix)."""
    from backend.geometry import shape_points

    vertices = arrays.get(f"vertices{suffix}")
    if vertices is None:
        raise RequestError(f"the request needs the array 'vertices{suffix}' (float [V, 3])")
    return shape_points(vertices, arrays.get(f"faces{suffix}"), count, seed), arrays.get(f"matrix{suffix}")


def shape_frame(points, metadata, matrix):
    """The frame that maps `points` (world, through `matrix`) into the model's space and back."""
    from backend.geometry import ShapeFrame

    return ShapeFrame.fit(points, model_half_extent(metadata), matrix)


def in_model_space(frame, points, device):
    """`points` mapped by `frame` into the model's space, float32 on `device`."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frame.to_model(points), dtype=np.float32)).to(device)


def results(session, request, points_world, context):
    """(header, arrays) of a generation op: the points (float64: world coordinates far from the
    origin keep their detail), and meshes when the request's output is "mesh"."""
    arrays = {"points": np.ascontiguousarray(points_world, dtype=np.float64)}
    header = {"output": request["output"]}
    if request["output"] == "mesh":
        network = sap_network(session, request)  # found once: finding it scans the model folders
        header["normals"] = []
        for index, points in enumerate(points_world):
            context.progress(index, len(points_world), "reconstructing meshes")
            vertices, faces, normals = reconstruct_points(session, points, request, network)
            arrays[f"mesh_vertices_{index}"], arrays[f"mesh_faces_{index}"] = vertices, faces
            header["normals"].append(normals)
    return header, arrays


def reconstruct_points(session, points, request, network):
    """(vertices float64 [V, 3] in the points' frame, faces int32 [F, 3], "network" or
    "estimated": the normals that made the mesh). With `network` (None: estimated normals) and
    field normals "auto", the estimated normals make a second mesh and the closer one wins;
    normals "network" asks for the network's alone."""
    from backend.sap.reconstruct import reconstruct as reconstruct_mesh

    try:
        mesh = reconstruct_mesh(points, network=network, resolution=request["resolution"], sigma=request["smoothing"],
                                device=session.device, compare_with_estimated=request["normals"] == "auto")
    except ValueError as exc:  # the points cannot be reconstructed (too few, NaN, ...)
        raise RequestError(str(exc)) from None
    return mesh.vertices.astype(np.float64), mesh.faces.astype(np.int32), mesh.metadata["normals"]


def sap_network(session, request):
    """The model's Shape As Points network, or None (estimated normals): field "normals" is
    "auto" (the network where the model ships one), "network" or "estimated"."""
    choice = request["normals"]
    path = None if choice == "estimated" else model_store.sap_network_path(request["model"])
    if path is None:
        if choice == "network":
            raise RequestError("this model ships no Shape As Points network; use normals 'auto' or 'estimated'")
        return None
    return session.sap_network(path)
