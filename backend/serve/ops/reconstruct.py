"""reconstruct: a watertight mesh through the points (Shape As Points), in their frame."""
from backend.serve import fields, shapes
from backend.serve.job import RequestError


def run(session, params, arrays, context):
    request = fields.parse("reconstruct", params)
    points = arrays.get("points")
    if points is None:
        raise RequestError("reconstruct needs the array 'points' (float [P, 3])")
    context.progress(0, 1, "reconstructing mesh")
    network = shapes.sap_network(session, request)
    vertices, faces, normals = shapes.reconstruct_points(session, points, request, network)
    return ({"vertex_count": len(vertices), "face_count": len(faces), "normals": normals},
            {"vertices": vertices, "faces": faces})
