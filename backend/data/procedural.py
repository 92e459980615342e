"""Built-in procedural shape categories for demos, tests and the shipped default model.

Every shape is a union (with carved cavities) of primitive signed distance fields evaluated
on a grid and extracted with marching cubes, so the result is one clean closed surface with
no interior faces: points sampled from it lie only where a viewer sees surface.

Conventions: y is up, the front of a shape faces +z (a chair's seat opens towards +z, an
airplane's and a car's nose point to +z). Furniture, lamps, mugs and bottles have roughly
real proportions in meters-like units and stand on y = 0; airplanes and cars are 2 units
long. Datasets normalize shapes anyway, so only proportions matter. Each shape's proportions and parts are drawn from a
generator seeded by (category, seed), so a seed always gives the same shape.
"""
import math
import zlib
from typing import Callable, Dict, List, NamedTuple, Tuple

import numpy as np

from backend.data.sampling import SurfaceSamples, sample_surface

CATEGORIES = ("chair", "table", "airplane", "mug", "bottle", "lamp", "car", "sofa")
DEFAULT_RESOLUTION = 80


class ProceduralShape(NamedTuple):
    """One generated shape.

    category: the category name.
    seed: the seed it was generated from.
    vertices: float32 [V, 3].
    faces: int64 [F, 3], wound so that normals point outwards.
    parts: the random design choices (styles, counts, main proportions), for inspection.
    """

    category: str
    seed: int
    vertices: np.ndarray
    faces: np.ndarray
    parts: Dict[str, object]


def generate_shape(category: str, seed: int, resolution: int = DEFAULT_RESOLUTION) -> ProceduralShape:
    """Build one random shape of `category`.

    Args:
        category: one of CATEGORIES.
        seed: non-negative int; the same (category, seed, resolution) gives the same mesh.
        resolution: grid cells along the shape's longest side (32..512). Higher is smoother
            and slower; thin parts are designed to stay at least ~2 cells thick at 64.

    Returns:
        ProceduralShape with a watertight triangle mesh.
    """
    if category not in _BUILDERS:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(resolution, (int, np.integer)) or not 32 <= resolution <= 512:
        raise ValueError(f"resolution must be an integer in [32, 512], got {resolution!r}")
    rng = np.random.default_rng([zlib.crc32(category.encode()), int(seed)])
    field = _Field()
    parts = _BUILDERS[category](rng, field)
    vertices, faces = field.to_mesh(resolution)
    return ProceduralShape(category, int(seed), vertices, faces, parts)


def sample_shape_points(category: str, seed: int, count: int, resolution: int = DEFAULT_RESOLUTION) -> np.ndarray:
    """float32 [count, 3] points drawn area-uniformly from generate_shape(category, seed).

    The point draw is seeded by the same seed, so the result is deterministic.
    """
    return sample_shape_surface(category, seed, count, resolution).points


def sample_shape_surface(category: str, seed: int, count: int, resolution: int = DEFAULT_RESOLUTION) -> SurfaceSamples:
    """The points of sample_shape_points with the outward unit normals of their triangles
    (backend.data.sampling.SurfaceSamples)."""
    shape = generate_shape(category, seed, resolution)
    return sample_surface(shape.vertices, shape.faces, count, seed=seed)


# ----------------------------------------------------------------------------------------
# Signed distance primitives. Each returns a _Part: a distance function of broadcastable
# coordinate arrays x [nx,1,1], y [1,ny,1], z [1,1,nz], and the box that holds its surface.
# Several are bounds rather than exact distances; marching cubes needs only the correct sign
# and a smooth field near the surface.


class _Part(NamedTuple):
    distance: Callable
    lower: np.ndarray
    upper: np.ndarray


def _box(center, half_size, rounding=0.0) -> _Part:
    center = np.asarray(center, float)
    half_size = np.asarray(half_size, float)
    inner = half_size - rounding

    def distance(x, y, z):
        qx, qy, qz = abs(x - center[0]) - inner[0], abs(y - center[1]) - inner[1], abs(z - center[2]) - inner[2]
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
        inside = np.minimum(np.maximum(np.maximum(qx, qy), qz), 0)
        return outside + inside - rounding

    return _Part(distance, center - half_size, center + half_size)


def _capsule(start, end, radius) -> _Part:
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = end - start
    length_sq = max(float(axis @ axis), 1e-12)

    def distance(x, y, z):
        px, py, pz = x - start[0], y - start[1], z - start[2]
        h = np.clip((px * axis[0] + py * axis[1] + pz * axis[2]) / length_sq, 0.0, 1.0)
        return np.sqrt((px - h * axis[0]) ** 2 + (py - h * axis[1]) ** 2 + (pz - h * axis[2]) ** 2) - radius

    return _Part(distance, np.minimum(start, end) - radius, np.maximum(start, end) + radius)


def _ellipsoid(center, radii) -> _Part:
    center, radii = np.asarray(center, float), np.asarray(radii, float)

    def distance(x, y, z):
        k = np.sqrt(((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2 + ((z - center[2]) / radii[2]) ** 2)
        return (k - 1.0) * radii.min()

    return _Part(distance, center - radii, center + radii)


def _lathe(axis: int, center, heights, radii) -> _Part:
    """Solid of revolution around a line parallel to `axis` through `center`: the radius at
    each height along the axis is the piecewise-linear profile (heights, radii); flat caps
    close it at the first and last height."""
    center = np.asarray(center, float)
    heights, radii = np.asarray(heights, float), np.asarray(radii, float)
    across = [a for a in range(3) if a != axis]

    def distance(*coords):
        rho = np.sqrt((coords[across[0]] - center[across[0]]) ** 2 + (coords[across[1]] - center[across[1]]) ** 2)
        along = coords[axis]
        profile = np.interp(along.ravel(), heights, radii).reshape(along.shape)
        return np.maximum(np.maximum(rho - profile, heights[0] - along), along - heights[-1])

    reach = radii.max()
    lower, upper = center - reach, center + reach
    lower[axis], upper[axis] = heights[0], heights[-1]
    return _Part(distance, lower, upper)


def _prism(axes: Tuple[int, int], polygon, thickness_center: float, half_thickness: float) -> _Part:
    """A convex polygon given in the coordinates (axes[0], axes[1]) extruded along the third
    axis over thickness_center ± half_thickness."""
    polygon = np.asarray(polygon, float)
    signed_area = np.sum(polygon[:, 0] * np.roll(polygon[:, 1], -1) - np.roll(polygon[:, 0], -1) * polygon[:, 1])
    if signed_area < 0:
        polygon = polygon[::-1]
    edges = np.roll(polygon, -1, axis=0) - polygon
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.linalg.norm(edges, axis=1, keepdims=True)
    depth_axis = 3 - axes[0] - axes[1]

    def distance(*coords):
        u, v = coords[axes[0]], coords[axes[1]]
        inside_polygon = None
        for corner, normal in zip(polygon, normals):
            d = (u - corner[0]) * normal[0] + (v - corner[1]) * normal[1]
            inside_polygon = d if inside_polygon is None else np.maximum(inside_polygon, d)
        return np.maximum(inside_polygon, abs(coords[depth_axis] - thickness_center) - half_thickness)

    lower, upper = np.zeros(3), np.zeros(3)
    lower[list(axes)], upper[list(axes)] = polygon.min(axis=0), polygon.max(axis=0)
    lower[depth_axis], upper[depth_axis] = thickness_center - half_thickness, thickness_center + half_thickness
    return _Part(distance, lower, upper)


def _ring(center, major_radius, minor_radius, stretch=1.0) -> _Part:
    """A torus in the xy plane (a mug handle), optionally stretched along y."""
    center = np.asarray(center, float)

    def distance(x, y, z):
        q = np.sqrt((x - center[0]) ** 2 + ((y - center[1]) / stretch) ** 2) - major_radius
        return np.sqrt(q**2 + (z - center[2]) ** 2) - minor_radius

    reach = np.array([major_radius + minor_radius, (major_radius + minor_radius) * stretch, minor_radius])
    return _Part(distance, center - reach, center + reach)


class _Field:
    """Solid parts and carved cavities, applied in order, evaluated sparsely on a grid."""

    def __init__(self):
        self._steps: List[Tuple[bool, _Part]] = []

    def add(self, part: _Part):
        self._steps.append((True, part))

    def carve(self, part: _Part):
        """Remove `part` from everything added so far (later parts are not carved)."""
        self._steps.append((False, part))

    def to_mesh(self, resolution: int):
        from skimage.measure import marching_cubes

        solids = [part for is_solid, part in self._steps if is_solid]
        lower = np.min([p.lower for p in solids], axis=0)
        upper = np.max([p.upper for p in solids], axis=0)
        cell = float((upper - lower).max()) / resolution
        margin = 3 * cell  # every part is evaluated this far beyond its box
        origin = lower - margin
        counts = np.ceil((upper + margin - origin) / cell).astype(int) + 1
        axes = [origin[a] + cell * np.arange(counts[a]) for a in range(3)]
        grid = np.full(counts, 1.0, dtype=np.float64)
        for is_solid, part in self._steps:
            start = np.clip(np.floor((part.lower - margin - origin) / cell).astype(int), 0, counts)
            stop = np.clip(np.ceil((part.upper + margin - origin) / cell).astype(int) + 1, 0, counts)
            window = tuple(slice(s, e) for s, e in zip(start, stop))
            x = axes[0][window[0], None, None]
            y = axes[1][None, window[1], None]
            z = axes[2][None, None, window[2]]
            values = part.distance(x, y, z)
            if is_solid:
                np.minimum(grid[window], values, out=grid[window])
            else:
                np.maximum(grid[window], -values, out=grid[window])
        vertices, faces, _, _ = marching_cubes(grid, level=0.0, spacing=(cell, cell, cell))
        return (vertices + origin).astype(np.float32), faces.astype(np.int64)


# ----------------------------------------------------------------------------------------
# Categories. Sizes are in meters where the object has a natural size; the grid resolution
# is relative to each shape's extent, so only proportions matter.


def _chair(rng, field: _Field) -> Dict[str, object]:
    seat_width, seat_depth = rng.uniform(0.42, 0.6), rng.uniform(0.4, 0.55)
    seat_top, seat_thickness = rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.08)
    seat_bottom = seat_top - seat_thickness
    field.add(_box([0, seat_top - seat_thickness / 2, 0], [seat_width / 2, seat_thickness / 2, seat_depth / 2], 0.012))

    legs = rng.choice(["four legs", "pedestal", "sled"], p=[0.65, 0.2, 0.15])
    leg_radius = rng.uniform(0.018, 0.03)
    inset = leg_radius + rng.uniform(0.0, 0.04)
    corners = [(sx * (seat_width / 2 - inset), sz * (seat_depth / 2 - inset)) for sx in (-1, 1) for sz in (-1, 1)]
    if legs == "four legs":
        splay = rng.uniform(0.0, 0.05)
        square = rng.random() < 0.5
        for cx, cz in corners:
            foot = [cx + np.sign(cx) * splay, leg_radius, cz + np.sign(cz) * splay]
            if square and splay == 0:
                field.add(_box([cx, seat_bottom / 2, cz], [leg_radius, seat_bottom / 2 + 0.01, leg_radius], 0.004))
            else:
                field.add(_capsule(foot, [cx, seat_bottom + 0.01, cz], leg_radius))
        if rng.random() < 0.35:
            height = rng.uniform(0.1, 0.2)
            for sx in (-1, 1):
                cx = sx * (seat_width / 2 - inset)
                field.add(_capsule([cx, height, -(seat_depth / 2 - inset)], [cx, height, seat_depth / 2 - inset], leg_radius * 0.7))
    elif legs == "pedestal":
        column_radius = rng.uniform(0.03, 0.045)
        field.add(_lathe(1, [0, 0, 0], [0.06, seat_bottom + 0.01], [column_radius, column_radius]))
        star_length = rng.uniform(0.25, 0.32)
        for k in range(5):
            angle = 2 * math.pi * k / 5 + math.pi / 10
            tip = [star_length * math.cos(angle), 0.045, star_length * math.sin(angle)]
            field.add(_capsule([0, 0.065, 0], tip, 0.025))
            field.add(_capsule([tip[0], 0.025, tip[2]], tip, 0.025))
    else:
        for sx in (-1, 1):
            cx = sx * (seat_width / 2 - inset)
            field.add(_capsule([cx, leg_radius, -seat_depth / 2], [cx, leg_radius, seat_depth / 2], leg_radius))
            for sz in (-1, 1):
                cz = sz * (seat_depth / 2 - inset)
                field.add(_capsule([cx, leg_radius, cz], [cx, seat_bottom + 0.01, cz], leg_radius))

    back_height = rng.uniform(0.3, 0.6)
    back_thickness = rng.uniform(0.035, 0.06)
    tilt = rng.uniform(0.0, 0.12)
    back_style = rng.choice(["panel", "slats"], p=[0.6, 0.4])
    back_z = -seat_depth / 2 + back_thickness / 2
    top = seat_top + back_height
    if back_style == "panel":
        outline = [[back_z - back_thickness / 2, seat_bottom], [back_z + back_thickness / 2, seat_bottom],
                   [back_z + back_thickness / 2 - tilt, top], [back_z - back_thickness / 2 - tilt, top]]
        field.add(_prism((2, 1), outline, 0.0, seat_width / 2))
    else:
        rail_height = rng.uniform(0.06, 0.12)
        slats = int(rng.integers(2, 6))
        post_radius = back_thickness / 2
        for sx in (-1, 1):
            x = sx * (seat_width / 2 - post_radius)
            field.add(_capsule([x, seat_bottom, back_z], [x, top, back_z - tilt], post_radius))
        rail = [[back_z - back_thickness / 2 - tilt * (1 - rail_height / back_height), top - rail_height],
                [back_z + back_thickness / 2 - tilt * (1 - rail_height / back_height), top - rail_height],
                [back_z + back_thickness / 2 - tilt, top], [back_z - back_thickness / 2 - tilt, top]]
        field.add(_prism((2, 1), rail, 0.0, seat_width / 2))
        for k in range(slats):
            x = (k + 1) / (slats + 1) * (seat_width - 2 * post_radius) - (seat_width / 2 - post_radius)
            lean = tilt * (1 - rail_height / back_height)
            field.add(_capsule([x, seat_top - 0.01, back_z], [x, top - rail_height / 2, back_z - lean], back_thickness * 0.4))

    arms = bool(rng.random() < 0.35)
    if arms:
        arm_height = seat_top + rng.uniform(0.18, 0.26)
        arm_width = rng.uniform(0.04, 0.06)
        for sx in (-1, 1):
            x = sx * (seat_width / 2 - arm_width / 2)
            field.add(_box([x, arm_height, 0.02 - tilt * 0.3], [arm_width / 2, 0.02, seat_depth / 2 - 0.01], 0.01))
            field.add(_capsule([x, seat_top - 0.01, seat_depth / 2 - 0.06], [x, arm_height, seat_depth / 2 - 0.06], 0.022))
    return {"legs": str(legs), "back": str(back_style), "arms": arms, "back_height": round(float(back_height), 3)}


def _table(rng, field: _Field) -> Dict[str, object]:
    height = rng.uniform(0.45, 0.78)
    top_thickness = rng.uniform(0.03, 0.06)
    round_top = bool(rng.random() < 0.3)
    if round_top:
        radius = rng.uniform(0.35, 0.6)
        width = depth = 2 * radius
        table_top = _lathe(1, [0, 0, 0], [height - top_thickness, height], [radius, radius])
    else:
        width, depth = rng.uniform(0.8, 1.8), rng.uniform(0.5, 0.95)
        table_top = _box([0, height - top_thickness / 2, 0], [width / 2, top_thickness / 2, depth / 2], 0.01)
    size = max(width, depth)
    support = rng.choice(["four legs", "pedestal", "trestle"], p=[0.65, 0.1, 0.25] if not round_top else [0.3, 0.7, 0.0])
    under = height - top_thickness + 0.005
    leg = size * rng.uniform(0.022, 0.035)
    if support == "four legs":
        inset = leg + rng.uniform(0.0, 0.08)
        spread = (width / 2 - inset) / (math.sqrt(2) if round_top else 1), (depth / 2 - inset) / (math.sqrt(2) if round_top else 1)
        for sx in (-1, 1):
            for sz in (-1, 1):
                field.add(_box([sx * spread[0], under / 2, sz * spread[1]], [leg, under / 2, leg], leg * 0.3))
        if rng.random() < 0.5:
            apron = rng.uniform(0.06, 0.12)
            field.add(_box([0, under - apron / 2, 0], [spread[0], apron / 2, spread[1]], 0.005))
            field.carve(_box([0, under - apron / 2, 0], [spread[0] - leg, apron, spread[1] - leg]))
        if rng.random() < 0.3:
            shelf = rng.uniform(0.12, 0.25) * height
            field.add(_box([0, shelf, 0], [spread[0], leg * 0.6, spread[1]], 0.005))
    elif support == "pedestal":
        column = size * rng.uniform(0.04, 0.07)
        base = min(width, depth) * rng.uniform(0.25, 0.4)
        field.add(_lathe(1, [0, 0, 0], [0.0, 0.03, 0.08, under], [base, base, column * 1.5, column]))
    else:
        panel = leg * 1.2
        for sx in (-1, 1):
            x = sx * (width / 2 - rng.uniform(0.08, 0.15))
            field.add(_box([x, under / 2, 0], [panel, under / 2, depth / 2 - 0.05], 0.01))
        field.add(_box([0, under * 0.35, 0], [width / 2 - 0.1, leg, leg], 0.005))
    # The top goes on last so that carving the apron's opening cannot reach it.
    field.add(table_top)
    return {"top": "round" if round_top else "rectangular", "support": str(support), "height": round(float(height), 3)}


def _wing(field: _Field, root_z: float, root_chord: float, half_span: float, taper: float, sweep: float,
          height: float, thickness: float, root_x: float = 0.0):
    tip_chord = root_chord * taper
    for side in (-1, 1):
        planform = [[root_x * side, root_z], [root_x * side, root_z - root_chord],
                    [side * (root_x + half_span), root_z - sweep - tip_chord], [side * (root_x + half_span), root_z - sweep]]
        field.add(_prism((0, 2), planform, height, thickness / 2))


def _airplane(rng, field: _Field) -> Dict[str, object]:
    length = 2.0
    radius = length * rng.uniform(0.045, 0.07)
    nose, tail = length / 2, -length / 2
    field.add(_lathe(2, [0, 0, 0], [tail, tail + 0.28 * length, nose - 0.14 * length, nose - 0.04 * length, nose],
                     [radius * 0.3, radius, radius, radius * 0.7, radius * 0.15]))
    thickness = length * rng.uniform(0.022, 0.03)
    root_chord = length * rng.uniform(0.14, 0.24)
    half_span = length * rng.uniform(0.38, 0.55)
    sweep = half_span * rng.uniform(0.05, 0.7)
    wing_height = radius * rng.choice([-0.55, 0.0, 0.55])
    wing_root = length * rng.uniform(0.08, 0.2)
    _wing(field, wing_root, root_chord, half_span, rng.uniform(0.25, 0.55), sweep, wing_height, thickness)

    fin_chord = length * rng.uniform(0.1, 0.16)
    fin_height = length * rng.uniform(0.12, 0.2)
    fin_sweep = fin_height * rng.uniform(0.4, 1.0)
    fin = [[tail + 0.02 + fin_chord, 0.0], [tail + 0.02, 0.0], [tail + 0.02 - fin_sweep * 0.15 + fin_sweep * 0.6, fin_height],
           [tail + 0.02 + fin_chord * 0.4 + fin_sweep * 0.6 - fin_sweep * 0.15, fin_height]]
    field.add(_prism((2, 1), [[z, y + radius * 0.5] for z, y in fin], 0.0, thickness / 2))
    t_tail = bool(rng.random() < 0.25)
    stabilizer_height = radius * 0.5 + fin_height if t_tail else radius * 0.2
    stabilizer_root = tail + 0.02 + fin_chord * 0.9 + (fin_sweep * 0.45 if t_tail else 0.0)
    _wing(field, stabilizer_root, fin_chord * 0.8, half_span * rng.uniform(0.28, 0.4), 0.5, fin_chord * 0.35,
          stabilizer_height, thickness * 0.9)

    engines = int(rng.choice([0, 2, 4], p=[0.2, 0.6, 0.2]))
    nacelle = radius * rng.uniform(0.45, 0.6)
    for k in range(engines // 2):
        fraction = (0.35, 0.65)[k] if engines == 4 else rng.uniform(0.3, 0.4)
        for side in (-1, 1):
            x = side * fraction * half_span
            z = wing_root - sweep * fraction + nacelle * 1.5
            y = wing_height - nacelle * 1.1
            field.add(_lathe(2, [x, y, 0], [z - root_chord * 0.8, z - root_chord * 0.7, z, z + 0.02],
                             [nacelle * 0.6, nacelle, nacelle, nacelle * 0.8]))
            field.add(_box([x, y + nacelle * 0.8, z - root_chord * 0.5], [thickness / 2, nacelle * 0.6, root_chord * 0.25]))
    return {"engines": engines, "t_tail": t_tail, "wing_position": float(np.sign(wing_height)),
            "sweep": round(float(sweep / half_span), 3)}


def _mug(rng, field: _Field) -> Dict[str, object]:
    height = rng.uniform(0.8, 1.3)
    radius = rng.uniform(0.35, 0.5)
    flare = rng.uniform(1.0, 1.18)
    wall = rng.uniform(0.05, 0.075)
    field.add(_lathe(1, [0, 0, 0], [0.0, 0.02, height], [radius * 0.95, radius, radius * flare]))
    handle = rng.choice(["round", "tall"], p=[0.6, 0.4])
    stretch = 1.0 if handle == "round" else rng.uniform(1.3, 1.6)
    major = rng.uniform(0.2, 0.26) * height / stretch
    field.add(_ring([radius * (flare + 1) / 2 + wall, height * rng.uniform(0.45, 0.55), 0], major, rng.uniform(0.045, 0.07), stretch))
    bottom = rng.uniform(0.05, 0.09)
    field.carve(_lathe(1, [0, 0, 0], [bottom, height + 0.1], [radius - wall, radius * flare - wall + 0.1 * (flare - 1)]))
    return {"handle": str(handle), "height": round(float(height), 3), "radius": round(float(radius), 3)}


def _bottle(rng, field: _Field) -> Dict[str, object]:
    style = rng.choice(["wine", "water", "jug"], p=[0.4, 0.4, 0.2])
    if style == "wine":
        body_radius, body_height, shoulder, neck_radius, neck = 0.2, rng.uniform(0.9, 1.1), 0.25, 0.07, rng.uniform(0.45, 0.6)
    elif style == "water":
        body_radius, body_height, shoulder, neck_radius, neck = 0.25, rng.uniform(0.9, 1.3), 0.3, 0.09, rng.uniform(0.12, 0.2)
    else:
        body_radius, body_height, shoulder, neck_radius, neck = 0.38, rng.uniform(0.55, 0.8), 0.35, 0.1, rng.uniform(0.12, 0.2)
    body_radius *= rng.uniform(0.85, 1.15)
    waist = rng.uniform(0.85, 1.0) if style == "water" else 1.0
    heights = [0.0, 0.03, body_height * 0.5, body_height]
    radii = [body_radius * 0.9, body_radius, body_radius * waist, body_radius]
    for t in np.linspace(0.2, 1.0, 5):
        heights.append(body_height + shoulder * t)
        radii.append(neck_radius + (body_radius - neck_radius) * 0.5 * (1 + math.cos(math.pi * t)))
    top = body_height + shoulder + neck
    heights += [top - 0.04, top - 0.035, top]
    radii += [neck_radius, neck_radius * 1.25, neck_radius * 1.2]
    field.add(_lathe(1, [0, 0, 0], heights, radii))
    cap = bool(rng.random() < 0.4)
    if cap:
        field.add(_lathe(1, [0, 0, 0], [top - 0.1, top + 0.04], [neck_radius * 1.35, neck_radius * 1.35]))
    return {"style": str(style), "cap": cap, "height": round(float(top), 3)}


def _lamp(rng, field: _Field) -> Dict[str, object]:
    style = rng.choice(["table", "floor", "desk"], p=[0.45, 0.25, 0.3])
    base_radius = rng.uniform(0.12, 0.2) * (1.4 if style == "floor" else 1.0)
    base_height = rng.uniform(0.03, 0.06)
    field.add(_lathe(1, [0, 0, 0], [0.0, base_height, base_height + 0.03], [base_radius, base_radius, base_radius * 0.5]))
    # A floor lamp is about 2.5 times as tall as the others, so its thin parts are made
    # thicker by that much to stay a few grid cells thick at the same resolution.
    thickness = 2.4 if style == "floor" else 1.0
    shell = 0.022 * thickness
    if style in ("table", "floor"):
        stem_top = rng.uniform(0.35, 0.55) if style == "table" else rng.uniform(1.3, 1.7)
        shade_bottom_radius = rng.uniform(0.15, 0.28) * (1.5 if style == "floor" else 1.0)
        shade_top_radius = shade_bottom_radius * rng.uniform(0.5, 1.0)
        shade_height = rng.uniform(0.18, 0.3) * (1.3 if style == "floor" else 1.0)
        bottom = stem_top - shade_height * 0.3
        top = bottom + shade_height
        field.add(_lathe(1, [0, 0, 0], [bottom, top], [shade_bottom_radius, shade_top_radius]))
        slope = (shade_top_radius - shade_bottom_radius) / shade_height
        field.carve(_lathe(1, [0, 0, 0], [bottom - 0.05, top + 0.05],
                           [shade_bottom_radius - shell - 0.05 * slope, shade_top_radius - shell + 0.05 * slope]))
        stem_radius = rng.uniform(0.018, 0.025) * thickness if style == "floor" else rng.uniform(0.018, 0.05)
        field.add(_capsule([0, base_height, 0], [0, stem_top, 0], stem_radius))
        field.add(_ellipsoid([0, stem_top + 0.04, 0], np.array([0.045, 0.06, 0.045]) * thickness))
        # a spider of spokes holds the shade on the stem, as on real lamps
        spoke_height = top - shell
        spoke_reach = shade_top_radius - shell * 0.5
        for k in range(3):
            angle = 2 * math.pi * k / 3
            rim = [spoke_reach * math.cos(angle), spoke_height, spoke_reach * math.sin(angle)]
            field.add(_capsule([0, stem_top, 0], rim, 0.012 * thickness))
        return {"style": str(style), "height": round(float(top), 3)}
    lower, upper = rng.uniform(0.3, 0.45), rng.uniform(0.3, 0.45)
    lean = rng.uniform(0.15, 0.45)  # the lower arm leans back, away from the front
    elbow = np.array([0.0, base_height + lower * math.cos(lean), -lower * math.sin(lean)])
    rise = rng.uniform(-0.35, 0.35)  # the upper arm reaches forward, a little up or down
    head = elbow + upper * np.array([0.0, math.sin(rise), math.cos(rise)])
    arm_radius = 0.016
    field.add(_capsule([0, base_height, 0], elbow, arm_radius))
    field.add(_capsule(elbow, head, arm_radius))
    shade_radius, shade_height = rng.uniform(0.08, 0.13), rng.uniform(0.1, 0.16)
    mouth = head[1] - shade_height
    neck = shade_radius * 0.4
    field.add(_lathe(1, [0, 0, head[2]], [mouth, head[1] - 0.02, head[1] + 0.01], [shade_radius, neck, arm_radius * 1.8]))
    inner_slope = (shade_radius - neck) / (shade_height - 0.02)
    field.carve(_lathe(1, [0, 0, head[2]], [mouth - 0.05, head[1] - 0.02 - shell],
                       [shade_radius - shell + 0.05 * inner_slope, neck - shell]))
    return {"style": "desk", "height": round(float(head[1] + 0.01), 3)}


def _car(rng, field: _Field) -> Dict[str, object]:
    length = 2.0
    width = length * rng.uniform(0.4, 0.47)
    wheel_radius = length * rng.uniform(0.075, 0.1)
    wheel_width = length * rng.uniform(0.05, 0.07)
    clearance = wheel_radius * rng.uniform(0.4, 0.7)
    body_top = clearance + length * rng.uniform(0.14, 0.2)
    field.add(_box([0, (clearance + body_top) / 2, 0], [width / 2, (body_top - clearance) / 2, length / 2], 0.06))
    kind = rng.choice(["sedan", "hatchback", "pickup"], p=[0.45, 0.35, 0.2])
    roof = body_top + length * rng.uniform(0.11, 0.16) * (1.2 if kind == "hatchback" else 1.0)
    windshield, rear = length * rng.uniform(0.1, 0.18), length * rng.uniform(0.08, 0.15)
    front = length * rng.uniform(0.15, 0.25)
    cabin_front = length / 2 - front
    if kind == "sedan":
        cabin_back = -length / 2 + length * rng.uniform(0.2, 0.28)
    elif kind == "hatchback":
        cabin_back, rear = -length / 2 + 0.05, length * rng.uniform(0.02, 0.06)
    else:
        cabin_back = cabin_front - length * rng.uniform(0.3, 0.38)
        rear = 0.02
    side = [[cabin_front, body_top - 0.01], [cabin_front - windshield, roof], [cabin_back + rear, roof], [cabin_back, body_top - 0.01]]
    field.add(_prism((2, 1), side, 0.0, width / 2 - 0.05))
    if kind == "pickup":
        wall = 0.04
        field.carve(_box([0, body_top, (cabin_back - wall - length / 2 + wall) / 2],
                         [width / 2 - wall, (body_top - clearance) * 0.6, (cabin_back - wall + length / 2 - wall) / 2]))
    axle = length / 2 - length * rng.uniform(0.16, 0.22)
    for sz in (-1, 1):
        for sx in (-1, 1):
            x = sx * (width / 2 - wheel_width / 2 + 0.01)
            field.add(_lathe(0, [0, wheel_radius, sz * axle], [x - wheel_width / 2, x + wheel_width / 2], [wheel_radius, wheel_radius]))
    return {"kind": str(kind), "wheel_radius": round(float(wheel_radius), 3)}


def _sofa(rng, field: _Field) -> Dict[str, object]:
    width, depth = rng.uniform(1.4, 2.4), rng.uniform(0.8, 1.0)
    seat_top, back_top = rng.uniform(0.4, 0.48), rng.uniform(0.75, 0.95)
    base = rng.uniform(0.05, 0.15)
    field.add(_box([0, (base + seat_top) / 2, 0.02], [width / 2, (seat_top - base) / 2, depth / 2 - 0.02], 0.04))
    back_depth = rng.uniform(0.15, 0.25)
    field.add(_box([0, (base + back_top) / 2, -depth / 2 + back_depth / 2], [width / 2, (back_top - base) / 2, back_depth / 2], 0.05))
    arms = rng.choice(["both", "none"], p=[0.8, 0.2])
    if arms == "both":
        arm_width, arm_top = rng.uniform(0.1, 0.22), seat_top + rng.uniform(0.12, 0.25)
        for sx in (-1, 1):
            field.add(_box([sx * (width / 2 - arm_width / 2), (base + arm_top) / 2, 0], [arm_width / 2, (arm_top - base) / 2, depth / 2], 0.05))
    cushions = int(rng.integers(1, 4))
    cushion_width = (width - 0.1) / cushions
    for k in range(cushions):
        x = -width / 2 + 0.05 + cushion_width * (k + 0.5)
        field.add(_box([x, seat_top + 0.03, 0.06], [cushion_width / 2 - 0.01, 0.06, depth / 2 - back_depth / 2 - 0.02], 0.05))
    if base > 0.08:
        for sx in (-1, 1):
            for sz in (-1, 1):
                field.add(_capsule([sx * (width / 2 - 0.08), 0.02, sz * (depth / 2 - 0.08)], [sx * (width / 2 - 0.08), base + 0.02, sz * (depth / 2 - 0.08)], 0.025))
    return {"arms": str(arms), "cushions": cushions}


_BUILDERS = {
    "chair": _chair,
    "table": _table,
    "airplane": _airplane,
    "mug": _mug,
    "bottle": _bottle,
    "lamp": _lamp,
    "car": _car,
    "sofa": _sofa,
}
