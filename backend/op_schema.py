"""What each op of the protocol takes: every header field's type, default and limits, declared once.

Standard library only, so that it ships with protocol.py inside the extension. The backend
checks requests with `parse`; the add-on's property bounds (lion_blender/wire.py), the CLI's
options (backend/cli/_generation.py) and the field tables of docs/protocol.md
(`python -m backend.op_schema`, checked by a test) derive from these declarations.
"""
import dataclasses
import json
import math
import sys

MAX_SEED = 2**63 - 1
MAX_STRING = 200


class SchemaError(ValueError):
    """A request field is unknown, missing, of the wrong type or out of bounds; the message
    names the field and what it must be."""


class _Required:
    def __repr__(self):
        return "required"


REQUIRED = _Required()  # the default of a field every request must give


@dataclasses.dataclass(frozen=True)
class Field:
    """One header field. `kind`: "int", "number" (int or float), "choice", "string" or "point"
    (three finite numbers). A default of None makes the field optional with no value."""
    name: str
    kind: str
    default: object = None
    minimum: float = None
    maximum: float = None
    choices: tuple = ()
    capped_by_steps: bool = False  # also at most the model's own number of diffusion steps T
    doc: str = ""

    def bounds(self):
        """The limits in words, e.g. "1..64", "0..1", "ddim or ddpm"."""
        if self.kind == "choice":
            return " or ".join(self.choices)
        if self.kind == "point":
            return "3 finite numbers"
        if self.kind == "string":
            return f"text of at most {MAX_STRING} characters"
        high = _number_text(self.maximum)
        if self.capped_by_steps:
            high = "T" if self.maximum is None else f"min({high}, T)"
        return f"{_number_text(self.minimum)}..{high}"

    def parse(self, value, num_steps=None):
        """`value` checked against this field (raises SchemaError), as int, float, str or tuple."""
        if self.kind == "int":
            high = self.maximum
            if self.capped_by_steps and num_steps is not None:
                high = num_steps if high is None else min(high, num_steps)
            if (isinstance(value, bool) or not isinstance(value, int) or value < self.minimum
                    or (high is not None and value > high)):
                raise SchemaError(f"{self.name} must be an integer in {_number_text(self.minimum)}.."
                                  f"{_number_text(high)}, got {_shown(value)}")
            return value
        if self.kind == "number":
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not _finite(value) or not self.minimum <= value <= self.maximum):
                raise SchemaError(f"{self.name} must be a number in [{_number_text(self.minimum)}, "
                                  f"{_number_text(self.maximum)}], got {_shown(value)}")
            return float(value)
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise SchemaError(f"{self.name} must be one of {', '.join(self.choices)}, got {_shown(value)}")
            return value
        if self.kind == "string":
            if not isinstance(value, str) or len(value) > MAX_STRING:
                raise SchemaError(f"{self.name} must be {self.bounds()}, got {_shown(value)}")
            return value
        if self.kind == "point":
            if (not isinstance(value, (list, tuple)) or len(value) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v) for v in value)):
                raise SchemaError(f"{self.name} must be three finite numbers, got {_shown(value)}")
            return tuple(float(v) for v in value)
        raise AssertionError(f"unknown field kind {self.kind!r}")


def _finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        return False


def _number_text(value):
    if value is None:
        return "∞"
    if value == MAX_SEED:
        return "2^63 − 1"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- the declarations ----------------------------------------------------------------------------

def _fields(*fields):
    return {f.name: f for f in fields}


MODEL = Field("model", "string", doc="a model name from hello's `models`; default: the first")
# The fields every generating op takes; resolution and normals matter with output "mesh".
COMMON = _fields(
    MODEL,
    Field("seed", "int", 0, 0, MAX_SEED, doc="random seed: the same seed gives the same shapes"),
    Field("sampler", "choice", "ddim", choices=("ddim", "ddpm"), doc="DDIM steps, or the full DDPM chain"),
    Field("steps", "int", 25, 1, 1000, capped_by_steps=True, doc="DDIM steps"),
    Field("eta", "number", 0.0, 0.0, 1.0, doc="DDIM η (0: deterministic)"),
    Field("output", "choice", "points", choices=("points", "mesh"),
          doc="points, or also meshes reconstructed with Shape As Points"),
)
RECONSTRUCTION = _fields(
    Field("resolution", "int", 128, 32, 256, doc="the Poisson grid of the reconstruction"),
    Field("smoothing", "number", 2.0, 0.5, 8.0,
          doc="Gaussian smoothing of the Poisson solve (Shape As Points' sigma): higher gives smoother meshes "
              "and joins thin parts, lower keeps finer detail"),
    Field("normals", "choice", "auto", choices=("auto", "network", "estimated"),
          doc="auto: the model's Shape As Points network where it ships one, or estimated normals, whichever "
              "mesh fits the points better; network: the network's alone"),
)
COUNT = Field("count", "int", 4, 1, 64, doc="how many shapes")
# Variations and voxel guides start from a diffusion step: `tau` itself, or the artist's
# `similarity` mapped onto the model's own T (pipelines.tau_from_similarity).
SIMILARITY = _fields(
    Field("tau", "int", None, 1, None, capped_by_steps=True, doc="the diffusion step to start from"),
    Field("similarity", "number", 0.7, 0.0, 1.0,
          doc="1 keeps the input, 0 only its kind: step round((1 − similarity)·T), at least 1"),
)
# What variations (of a shape or a voxel guide) stay: the input's own category by default.
KEPT_CATEGORY = Field("category", "string", "auto",
                      doc="\"auto\": the input's own category (where the model has categories), \"any\", "
                          "or one of the model's `categories`")

OPS = {
    "hello": {},
    "load_model": _fields(MODEL),
    "sample": _fields(
        dataclasses.replace(COUNT, default=1), *COMMON.values(), *RECONSTRUCTION.values(),
        Field("center", "point", (0.0, 0.0, 0.0), doc="where the shapes go (in the frame of `matrix`)"),
        Field("size", "number", 1.0, 1e-6, 1e6, doc="half of each shape's longest side"),
        Field("category", "string", "any",
              doc="\"any\" (each shape's category drawn as often as the training data held it, where the model "
                  "records that) or one of the model's `categories`"),
        Field("guidance", "number", 2.0, 0.0, 20.0, doc="classifier-free guidance of the category (1: plain)")),
    "variations": _fields(COUNT, *SIMILARITY.values(), *COMMON.values(), *RECONSTRUCTION.values(), KEPT_CATEGORY),
    "interpolate": _fields(Field("frames", "int", 8, 2, 256, doc="shapes from A to B, both included"),
                           *COMMON.values(), *RECONSTRUCTION.values()),
    "regenerate_region": _fields(*COMMON.values(), *RECONSTRUCTION.values()),
    "voxel_guided": _fields(COUNT, *SIMILARITY.values(), *COMMON.values(), *RECONSTRUCTION.values(), KEPT_CATEGORY,
                            Field("voxel_size", "number", REQUIRED, 1e-9, 1e9,
                                  doc="the guide lattice's spacing, in world units")),
    "reconstruct": _fields(*RECONSTRUCTION.values(), MODEL),
}
# Pairs of fields a request may give one of, not both.
EXCLUSIVE = {"variations": ("tau", "similarity"), "voxel_guided": ("tau", "similarity")}

# The largest shape a request may carry: 10 million float64 vertices and int32 triangles are
# 360 MB, inside a frame's 512 MB of arrays (protocol.py). The add-on refuses bigger meshes
# before reading them out of Blender, the backend before any work.
MAX_VERTICES = 10_000_000
MAX_TRIANGLES = 10_000_000

# Not a request field: a voxel guide is made by the add-on (or the CLI) and sent as voxel
# centers; this is the finest guide either makes, voxels along its longest side.
GUIDE_RESOLUTION = Field("resolution", "int", 16, 2, 128, doc="voxels along the guide's longest side")
# The most voxels a guide sent to voxel_guided may have: a solid block of the finest guide.
MAX_GUIDE_VOXELS = GUIDE_RESOLUTION.maximum ** 3


def field(op, name):
    return OPS[op][name]


def parse(op, params, num_steps=None):
    """{name: value} of every field of `op`: what `params` gives, checked, else the default
    (None for an optional field not given). Unknown fields are refused, so that a misspelt one
    is not silently replaced by its default. `num_steps` is the model's T, where known."""
    fields = OPS[op]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise SchemaError(f"{op} takes no field {', '.join(map(repr, unknown))} (it takes: "
                          f"{', '.join(fields) or 'none'})")
    pair = EXCLUSIVE.get(op)
    if pair and all(name in params for name in pair):
        raise SchemaError(f"give {pair[0]} or {pair[1]}, not both")
    values = {}
    for name, spec in fields.items():
        if name in params and not (params[name] is None and spec.default is None):
            values[name] = spec.parse(params[name], num_steps)
        elif spec.default is REQUIRED:
            raise SchemaError(f"{op} needs the field {name} ({spec.bounds()})")
        else:
            values[name] = spec.default
    return values


def _table(fields):
    lines = ["| field | type | default | limits | meaning |", "|---|---|---|---|---|"]
    for spec in fields:
        default = {None: "—", REQUIRED: "required"}.get(spec.default) if spec.default in (None, REQUIRED) \
            else f"`{json.dumps(spec.default)}`"
        lines.append(f"| `{spec.name}` | {spec.kind} | {default} | {spec.bounds()} | {spec.doc} |")
    return "\n".join(lines)


def markdown():
    """The field tables of docs/protocol.md (between its op_schema markers): the generating
    ops' common fields once, then each op's own."""
    shared = {**COMMON, **RECONSTRUCTION}
    parts = ["Common fields of the generating ops (sample, variations, interpolate, regenerate_region, "
             "voxel_guided); `resolution` and `normals` matter with `output` \"mesh\":", "", _table(shared.values())]
    for op, fields in OPS.items():
        generating = shared.keys() <= fields.keys()
        own = [spec for name, spec in fields.items() if not (generating and name in shared)]
        if not own:
            parts += ["", f"`{op}`: " + ("the common fields only." if generating else "no fields.")]
            continue
        parts += ["", f"`{op}`" + (" (and the common fields):" if generating else ":"), "", _table(own)]
        if op in EXCLUSIVE:
            parts += ["", f"Give `{EXCLUSIVE[op][0]}` or `{EXCLUSIVE[op][1]}`, not both."]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
