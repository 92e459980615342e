"""What the add-on shares with the backend: the protocol's codec, its op schema and the voxel lattice.

The installed extension carries the backend package beside the add-on; in the source tree it
sits beside lion_blender/. No bpy here: the bounds of the add-on's settings come from the op
schema, so the panel offers exactly what the backend accepts.
"""
try:
    from .backend import op_schema, protocol, voxel_lattice  # noqa: F401  (the installed extension)
except ImportError:  # the source tree
    from backend import op_schema, protocol, voxel_lattice  # noqa: F401


def property_bounds(op, name):
    """default, min and max of a Blender property for the field `name` of `op` (`op` "guide":
    the voxel guide's resolution, which the add-on makes itself)."""
    spec = op_schema.GUIDE_RESOLUTION if op == "guide" else op_schema.field(op, name)
    bounds = {"default": spec.default, "min": spec.minimum}
    if spec.maximum is not None:
        bounds["max"] = spec.maximum
    return bounds
