"""Voxel guides: voxelizing shapes and sampling the outside faces of voxel unions."""
import numpy as np
import pytest
import trimesh

from backend.voxels import voxel_surface_points, voxelize


def _box_points(count, seed):
    """Points float64 [count, 3] on the surface of the cube [-1, 1]^3."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, size=(count, 3))
    axis = rng.integers(0, 3, size=count)
    points[np.arange(count), axis] = rng.choice([-1.0, 1.0], size=count)
    return points


def _cells(guide):
    """Integer lattice cells of a guide, as a set of tuples."""
    origin = guide.centers.min(axis=0)
    return {tuple(c) for c in np.round((guide.centers - origin) / guide.voxel_size).astype(int)}


def test_cube_points_give_a_hollow_shell_of_voxels():
    guide = voxelize(_box_points(30000, seed=1), resolution=8)
    assert guide.centers.dtype == np.float64 and guide.centers.shape[1] == 3
    assert guide.voxel_size == pytest.approx(0.25)
    # the shell of an 8x8x8 block: every cell but the 6x6x6 inside
    assert len(guide.centers) == 8**3 - 6**3
    assert np.allclose(guide.centers.min(axis=0), -0.875) and np.allclose(guide.centers.max(axis=0), 0.875)


def test_filled_cube_occupies_every_cell():
    guide = voxelize(_box_points(30000, seed=1), resolution=8, filled=True)
    assert len(guide.centers) == 8**3
    assert len(_cells(guide)) == 8**3


def test_sphere_mesh_voxels_lie_near_the_sphere_and_fill_to_a_ball():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    resolution = 16
    shell = voxelize(sphere, resolution)
    size = shell.voxel_size
    assert size == pytest.approx(2.0 / resolution, rel=1e-3)
    radii = np.linalg.norm(shell.centers, axis=1)
    # a voxel the surface passes through has its centre within half a diagonal of the sphere
    assert (np.abs(radii - 1.0) <= np.sqrt(3) / 2 * size + 1e-6).all()
    solid = voxelize((sphere.vertices, sphere.faces), resolution, filled=True)
    assert _cells(shell) < _cells(solid)
    # the solid holds every lattice cell well inside the ball and none well outside it
    lattice = (np.argwhere(np.ones((resolution,) * 3)) + 0.5) * size - 1.0
    lattice_radii = np.linalg.norm(lattice, axis=1)
    margin = np.sqrt(3) / 2 * size
    solid_radii = np.linalg.norm(solid.centers, axis=1)
    assert (solid_radii < 1.0 + margin).all()
    assert (solid_radii < 1.0 - margin).sum() == (lattice_radii < 1.0 - margin).sum()
    volume = len(solid.centers) * size**3
    assert 4 / 3 * np.pi * (1 - margin) ** 3 < volume < 4 / 3 * np.pi * (1 + margin) ** 3


def test_resolution_counts_cells_along_the_longest_side():
    # bounding box 4 x 1 x 2: a cube of edge 4 around its centre (2, 0.5, 1), cells of 1
    points = np.array([[0, 0, 0], [4, 1, 2], [2, 0.5, 1]], float)
    guide = voxelize(points, resolution=4)
    assert guide.voxel_size == pytest.approx(1.0)
    assert np.allclose(guide.centers, [[0.5, 0.0, 0.5], [2.5, 1.0, 1.5], [3.5, 1.0, 2.5]])


def test_one_voxel_surface_is_its_six_faces_uniformly():
    points = voxel_surface_points([[1.0, 2.0, 3.0]], 0.5, 60000, seed=2)
    assert points.shape == (60000, 3) and points.dtype == np.float64
    offsets = (points - [1.0, 2.0, 3.0]) / 0.5
    assert (np.abs(offsets) <= 0.5 + 1e-5).all()
    on_face = np.isclose(np.abs(offsets), 0.5, atol=1e-5)
    assert (on_face.sum(axis=1) >= 1).all()
    # each of the six faces receives a sixth of the points
    face = np.argmax(np.abs(offsets), axis=1) * 2 + (offsets[np.arange(len(offsets)), np.argmax(np.abs(offsets), axis=1)] < 0)
    shares = np.bincount(face, minlength=6) / len(points)
    assert np.allclose(shares, 1 / 6, atol=0.01)


def test_shared_faces_between_voxels_receive_no_points():
    size = 1.0
    centers = np.array([[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [1.5, 1.5, 0.5]])
    points = voxel_surface_points(centers, size, 50000, seed=3)
    # every point lies on the boundary of some voxel
    offsets = np.abs(points[:, None, :] - centers[None]) / size
    inside_cube = (offsets <= 0.5 + 1e-5).all(axis=2)
    on_boundary = inside_cube & np.isclose(offsets, 0.5, atol=1e-5).any(axis=2)
    assert on_boundary.any(axis=1).all()
    # the face x=1 between the first two voxels, and y=1 between the last two
    on_shared_x = np.isclose(points[:, 0], 1.0, atol=1e-5) & (points[:, 1] > 1e-3) & (points[:, 1] < 1 - 1e-3) \
        & (points[:, 2] > 1e-3) & (points[:, 2] < 1 - 1e-3)
    on_shared_y = np.isclose(points[:, 1], 1.0, atol=1e-5) & (points[:, 0] > 1 + 1e-3) & (points[:, 0] < 2 - 1e-3) \
        & (points[:, 2] > 1e-3) & (points[:, 2] < 1 - 1e-3)
    assert not on_shared_x.any() and not on_shared_y.any()
    # 3 voxels x 6 faces minus 2 shared pairs = 14 equal faces; the top face z=1 holds 3 of them
    assert (np.isclose(points[:, 2], 1.0, atol=1e-5)).mean() == pytest.approx(3 / 14, abs=0.01)


def test_filled_guide_surface_matches_its_outside_only():
    guide = voxelize(_box_points(30000, seed=4), resolution=6, filled=True)
    points = voxel_surface_points(guide.centers, guide.voxel_size, 20000, seed=5)
    # the surface of a solid block is the block's own boundary: the cube [-1, 1]^3
    assert np.isclose(np.abs(points).max(axis=1), 1.0, atol=1e-5).all()


def test_duplicate_centres_count_once_and_seed_repeats():
    centers = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    a = voxel_surface_points(centers, 1.0, 100, seed=7)
    b = voxel_surface_points(centers[:1], 1.0, 100, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, voxel_surface_points(centers, 1.0, 100, seed=8))


@pytest.mark.parametrize(
    "centers, size, count, message",
    [
        (np.zeros((0, 3)), 1.0, 10, "voxel_centers is empty"),
        (np.zeros((4, 2)), 1.0, 10, "voxel_centers must have shape"),
        (np.array([[0.0, np.nan, 0.0]]), 1.0, 10, "voxel_centers holds NaN"),
        (np.zeros((1, 3)), 0.0, 10, "voxel_size must be a positive"),
        (np.zeros((1, 3)), -1.0, 10, "voxel_size must be a positive"),
        (np.zeros((1, 3)), float("nan"), 10, "voxel_size must be a positive"),
        (np.zeros((1, 3)), 1.0, 0, "count must be a positive integer"),
        (np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]]), 1.0, 10, "not on a common lattice"),
    ],
)
def test_surface_points_reject_bad_input(centers, size, count, message):
    with pytest.raises(ValueError, match=message):
        voxel_surface_points(centers, size, count)


@pytest.mark.parametrize(
    "shape, resolution, message",
    [
        (np.zeros((0, 3)), 8, "points_or_mesh is empty"),
        (np.array([[0.0, 0.0, np.inf]]), 8, "points_or_mesh holds NaN"),
        (np.ones((5, 3)), 8, "the shape has no size"),
        (np.random.default_rng(0).random((5, 3)), 0, "resolution must be between"),
        (np.random.default_rng(0).random((5, 3)), 257, "resolution must be between"),
        (np.random.default_rng(0).random((5, 3)), 8.0, "resolution must be an integer"),
        ((np.eye(3), np.array([[0, 1, 5]])), 8, "faces refer to vertices"),
        ((np.eye(3), np.zeros((0, 3), int)), 8, "the mesh has no faces"),
    ],
)
def test_voxelize_rejects_bad_input(shape, resolution, message):
    with pytest.raises(ValueError, match=message):
        voxelize(shape, resolution)


# --- the shared lattice (backend/voxel_lattice.py) against obviously right twins ---------------

@pytest.mark.parametrize("seed", range(6))
def test_fill_enclosed_matches_scipys_hole_filling(seed):
    from scipy import ndimage

    from backend.voxel_lattice import fill_enclosed

    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 12, size=3))
    occupied = rng.random(shape) < rng.uniform(0.2, 0.7)
    if seed == 0:  # a closed hollow box, whose inside must fill
        occupied = np.ones((7, 6, 5), dtype=bool)
        occupied[1:-1, 1:-1, 1:-1] = False
    assert np.array_equal(fill_enclosed(occupied), ndimage.binary_fill_holes(occupied))


@pytest.mark.parametrize("seed", range(6))
def test_exposed_faces_are_the_faces_without_a_neighbour(seed):
    from backend.voxel_lattice import FACE_DIRECTIONS, exposed_faces

    rng = np.random.default_rng(seed)
    cells = np.unique(rng.integers(-3, 4, size=(rng.integers(1, 60), 3)) * rng.integers(1, 1000), axis=0)
    occupied = {tuple(c) for c in cells}
    expected = {(tuple(c), d) for c in cells for d, step in enumerate(FACE_DIRECTIONS)
                if tuple(c + step) not in occupied}
    face_cells, directions = exposed_faces(cells)
    found = [(tuple(c), int(d)) for c, d in zip(face_cells, directions)]
    assert len(found) == len(set(found)) and set(found) == expected
    assert list(directions) == sorted(directions), "grouped by direction, in FACE_DIRECTIONS' order"
