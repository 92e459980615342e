"""torch Datasets of fixed-size, normalized point sets over the three shape sources.

Every item is a float32 tensor [N, 3]. Training items are random subsets of each shape's
stored points, drawn from a generator seeded by (seed, epoch, index): the same epoch always
gives the same batches, whatever the worker count or rank, which exact `--resume` relies on.
Call `set_epoch` at the start of each epoch (as with DistributedSampler), before the
DataLoader's iterator is created (workers copy the dataset then, so use persistent_workers=False).
Evaluation items are each shape's first N points, the fixed protocol of PointFlow and LION.
"""
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.data.mesh_folder import MeshFolderShapes
from backend.data.normalization import GlobalNormalization, ShapeBoxNormalization
from backend.data.procedural import CATEGORIES, DEFAULT_RESOLUTION, sample_shape_points, sample_shape_surface
from backend.data.shapenet import ShapeNetPC15kShapes

NormalizationLike = Union[str, GlobalNormalization, ShapeBoxNormalization]
SUBSAMPLE_MODES = ("random", "first")


class ProceduralShapes:
    """Procedural shapes cycling through `categories`: shape i is category i % C with seed
    first_seed + i // C. Points are generated on first use and kept in memory."""

    training_pool = None

    def __init__(self, categories: Sequence[str] = CATEGORIES, shapes_per_category: int = 100,
                 first_seed: int = 0, points_per_shape: int = 10000, resolution: int = DEFAULT_RESOLUTION):
        categories = [categories] if isinstance(categories, str) else list(categories)
        unknown = [c for c in categories if c not in CATEGORIES]
        if not categories or unknown:
            raise ValueError(f"categories must be some of {', '.join(CATEGORIES)}, got {categories!r}")
        if not isinstance(shapes_per_category, int) or shapes_per_category < 1:
            raise ValueError(f"shapes_per_category must be a positive integer, got {shapes_per_category!r}")
        if not isinstance(first_seed, int) or first_seed < 0:
            raise ValueError(f"first_seed must be a non-negative integer, got {first_seed!r}")
        self.categories, self.shapes_per_category = categories, shapes_per_category
        self.first_seed, self.points_per_shape, self.resolution = first_seed, points_per_shape, resolution
        self._points: Dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.categories) * self.shapes_per_category

    def _category_and_seed(self, index: int) -> Tuple[str, int]:
        return self.categories[index % len(self.categories)], self.first_seed + index // len(self.categories)

    def points(self, index: int) -> np.ndarray:
        """float32 [points_per_shape, 3] surface points of shape `index`."""
        if index not in self._points:
            category, seed = self._category_and_seed(index)
            self._points[index] = sample_shape_points(category, seed, self.points_per_shape, self.resolution)
        return self._points[index]

    def surface_normals(self, index: int) -> np.ndarray:
        """float32 [points_per_shape, 3]: the outward unit normal of the mesh at each of
        points(index). Not kept: only reconstruction training asks, once per shape."""
        category, seed = self._category_and_seed(index)
        surface = sample_shape_surface(category, seed, self.points_per_shape, self.resolution)
        self._points.setdefault(index, surface.points)
        return surface.normals

    def name(self, index: int) -> str:
        category, seed = self._category_and_seed(index)
        return f"{category}/{seed}"

    def category(self, index: int) -> str:
        return self._category_and_seed(index)[0]

    def all_points(self) -> Iterable[np.ndarray]:
        return (self.points(i) for i in range(len(self)))


class PointCloudDataset(Dataset):
    """Fixed-size normalized point sets from a shape source.

    Args:
        shapes: a source (ShapeNetPC15kShapes, MeshFolderShapes, ProceduralShapes): anything
            with __len__, points(i) -> float32 [M, 3], name(i), category(i), all_points() and
            training_pool (how many leading points random subsets come from; None: all).
        points_per_shape: N, the points in each item.
        normalization: "global" (fit mean/std on these shapes), "shape_box" (each shape's box
            to [-1, 1]), or a normalization object, e.g. the training set's for a test split or
            the one stored in a checkpoint.
        subsample: "random" (training: a fresh subset each epoch) or "first" (evaluation: the
            first N points of each shape, always the same).
        seed: seeds the random subsets.
        with_replacement: draw random subsets with replacement, as PointFlow and LION do.
    """

    def __init__(self, shapes, points_per_shape: int = 2048, normalization: NormalizationLike = "global",
                 subsample: str = "random", seed: int = 0, with_replacement: bool = True):
        if not isinstance(points_per_shape, int) or points_per_shape < 1:
            raise ValueError(f"points_per_shape must be a positive integer, got {points_per_shape!r}")
        if subsample not in SUBSAMPLE_MODES:
            raise ValueError(f"subsample must be one of {', '.join(SUBSAMPLE_MODES)}, got {subsample!r}")
        self.shapes, self.points_per_shape, self.subsample = shapes, points_per_shape, subsample
        self.seed, self.with_replacement, self.epoch = seed, with_replacement, 0
        self.normalization = self._resolve_normalization(normalization)
        self._shape_statistics: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def _resolve_normalization(self, normalization):
        if normalization == "global":
            return GlobalNormalization.fit(self.shapes.all_points())
        if normalization == "shape_box":
            return ShapeBoxNormalization()
        if isinstance(normalization, (GlobalNormalization, ShapeBoxNormalization)):
            return normalization
        raise ValueError(f"normalization must be 'global', 'shape_box' or a normalization object, got {normalization!r}")

    def set_epoch(self, epoch: int):
        """Choose the random subsets of this epoch (call before iterating each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.shapes)

    def shape_statistics(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """(center float [1, 3], scale float [1, 1] or [1, 3]) that normalized item `index`:
        item = (points - center) / scale, so points = item * scale + center."""
        if index not in self._shape_statistics:
            self._shape_statistics[index] = self.normalization.statistics(self.shapes.points(index).astype(np.float64))
        return self._shape_statistics[index]

    def __getitem__(self, index: int) -> torch.Tensor:
        """float32 [points_per_shape, 3], the normalized points of shape `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} shapes")
        points = self.shapes.points(index)
        pool = points if self.shapes.training_pool is None else points[: self.shapes.training_pool]
        if self.subsample == "first":
            if len(points) < self.points_per_shape:
                raise ValueError(f"shape {self.shapes.name(index)} has {len(points)} points, fewer than {self.points_per_shape}")
            chosen = points[: self.points_per_shape]
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.with_replacement:
                chosen = pool[rng.integers(0, len(pool), self.points_per_shape)]
            else:
                if len(pool) < self.points_per_shape:
                    raise ValueError(f"shape {self.shapes.name(index)} has {len(pool)} points, fewer than {self.points_per_shape}")
                chosen = pool[rng.permutation(len(pool))[: self.points_per_shape]]
        center, scale = self.shape_statistics(index)
        return torch.from_numpy(((chosen - center) / scale).astype(np.float32))

    def name(self, index: int) -> str:
        return self.shapes.name(index)

    def category(self, index: int) -> str:
        return self.shapes.category(index)

    def evaluation_arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole set as a reference for backend.evaluate.

        Returns:
            points float32 [S, N, 3] (the items, normalized), center float64 [S, 1, 3] and
            scale float64 [S, 1, 1] or [S, 1, 3] such that points * scale + center is in the
            shapes' own frame: save points as the reference .npy and (center, scale) as the
            `--reference-stats` .npz, and generated samples in the model's normalized space
            are evaluated the way LION does.
        """
        points = np.stack([self[i].numpy() for i in range(len(self))])
        statistics = [self.shape_statistics(i) for i in range(len(self))]
        center = np.stack([np.broadcast_to(c, (1, 3)) for c, _ in statistics]).astype(np.float64)
        scale = np.stack([s for _, s in statistics]).astype(np.float64)
        return points, center, scale


class ShapeNetDataset(PointCloudDataset):
    """A split of PointFlow/LION's ShapeNetCore.v2.PC15k folders.

    Args:
        root: the folder holding `<synset>/{train,val,test}/<id>.npy`.
        categories: names ("chair"), synset ids ("03001627"), lists of them, or "all".
        split: "train", "val" or "test". Subsets default to "random" for train, else "first".
        Other arguments as PointCloudDataset; for val/test pass the training set's
        `normalization`, as LION evaluates with the training statistics.
    """

    def __init__(self, root: str, categories, split: str = "train", points_per_shape: int = 2048,
                 normalization: NormalizationLike = "global", subsample: Optional[str] = None, seed: int = 0,
                 with_replacement: bool = True):
        shapes = ShapeNetPC15kShapes(root, categories, split)
        subsample = subsample or ("random" if split == "train" else "first")
        super().__init__(shapes, points_per_shape, normalization, subsample, seed, with_replacement)


class MeshFolderDataset(PointCloudDataset):
    """Every readable mesh under `folder`, sampled once into `cache_dir`.

    Broken files are skipped with a warning naming each (also listed in `skipped`).
    `points_per_mesh` points are cached per mesh; other arguments as PointCloudDataset.
    """

    def __init__(self, folder: str, cache_dir: str, points_per_shape: int = 2048, points_per_mesh: int = 15000,
                 normalization: NormalizationLike = "global", subsample: str = "random", seed: int = 0,
                 with_replacement: bool = True):
        shapes = MeshFolderShapes(folder, cache_dir, points_per_mesh)
        self.skipped = shapes.skipped
        super().__init__(shapes, points_per_shape, normalization, subsample, seed, with_replacement)


class ProceduralDataset(PointCloudDataset):
    """Built-in procedural shapes: `shapes_per_category` of each category, seeds from
    `first_seed` (give a held-out set a disjoint seed range). Other arguments as
    PointCloudDataset; `points_per_pool` points are generated per shape to subsample from."""

    def __init__(self, categories: Sequence[str] = CATEGORIES, shapes_per_category: int = 100, first_seed: int = 0,
                 points_per_shape: int = 2048, points_per_pool: int = 10000,
                 normalization: NormalizationLike = "global", subsample: str = "random", seed: int = 0,
                 with_replacement: bool = True, resolution: int = DEFAULT_RESOLUTION):
        shapes = ProceduralShapes(categories, shapes_per_category, first_seed, points_per_pool, resolution)
        super().__init__(shapes, points_per_shape, normalization, subsample, seed, with_replacement)
