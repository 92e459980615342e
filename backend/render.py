"""Point clouds to PNG contact sheets, for training logs and quick looks (numpy + Pillow).

A fixed three-quarter view (y up, as LION's ShapeNet data), orthographic, points drawn far
to near with a depth shade, so a sheet of shapes is readable without a 3D viewer.

Sheets for judging a model use `true_scale`: every tile shares one scale (the largest shape's)
and prints its shape's half extent, so a sample that blew up cannot hide by being fitted to
its frame.
"""
import numpy as np
from PIL import Image, ImageDraw

VIEW_AZIMUTH_DEG = 35.0
VIEW_ELEVATION_DEG = 20.0


def _view_rotation():
    az, el = np.radians(VIEW_AZIMUTH_DEG), np.radians(VIEW_ELEVATION_DEG)
    turn = np.array([[np.cos(az), 0, np.sin(az)], [0, 1, 0], [-np.sin(az), 0, np.cos(az)]])
    tilt = np.array([[1, 0, 0], [0, np.cos(el), -np.sin(el)], [0, np.sin(el), np.cos(el)]])
    return tilt @ turn


def view_extent(points):
    """Half the size of the points' view-plane footprint: what render_points fits to its frame."""
    points = np.asarray(points, dtype=np.float64)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        return 0.0
    return float(np.abs(((points - points.mean(axis=0)) @ _view_rotation().T)[:, :2]).max())


def half_extent(points):
    """Half the longest side of the points' bounding box."""
    points = np.asarray(points, dtype=np.float64)
    points = points[np.isfinite(points).all(axis=1)]
    return float(np.ptp(points, axis=0).max() / 2) if len(points) else 0.0


def render_points(points, size=256, point_radius=1, extent=None):
    """float [N, 3] -> uint8 RGB image [size, size, 3] of the points, fitted to the frame, or
    at the scale where `extent` (a view_extent) fills it."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3], got {points.shape}")
    image = np.full((size, size, 3), 255, np.uint8)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        return image
    view = (points - points.mean(axis=0)) @ _view_rotation().T
    extent = max(np.abs(view[:, :2]).max() if extent is None else extent, 1e-9)
    pixels = ((view[:, :2] / extent) * 0.45 * size + size / 2).astype(np.int64)
    columns, rows = pixels[:, 0], size - 1 - pixels[:, 1]
    depth = view[:, 2]
    shade = (depth - depth.min()) / max(np.ptp(depth), 1e-9)  # 0 far .. 1 near
    order = np.argsort(depth)
    colour = np.stack([40 + 60 * shade, 80 + 90 * shade, 160 + 80 * shade], axis=1).astype(np.uint8)
    for dr in range(-point_radius, point_radius + 1):
        for dc in range(-point_radius, point_radius + 1):
            r, c = rows[order] + dr, columns[order] + dc
            inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            image[r[inside], c[inside]] = colour[order][inside]
    return image


def contact_sheet(point_sets, path, columns=4, size=256, true_scale=False):
    """Render a list of float [N, 3] point sets in a grid and write it to `path` as PNG; with
    `true_scale`, at one shared scale, each tile labelled with its half extent."""
    if len(point_sets) == 0:
        raise ValueError("point_sets must not be empty")
    rows = -(-len(point_sets) // columns)
    sheet = np.full((rows * size, min(columns, len(point_sets)) * size, 3), 255, np.uint8)
    extent = max(view_extent(points) for points in point_sets) if true_scale else None
    for index, points in enumerate(point_sets):
        r, c = divmod(index, columns)
        sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = render_points(points, size, extent=extent)
    image = Image.fromarray(sheet)
    if true_scale:
        draw = ImageDraw.Draw(image)
        for index, points in enumerate(point_sets):
            r, c = divmod(index, columns)
            draw.text((c * size + 4, r * size + 4), f"half extent {half_extent(points):.2f}", fill=(90, 90, 90))
    image.save(path)
    return path
