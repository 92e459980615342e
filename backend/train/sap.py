"""Train the Shape As Points network that turns generated point clouds into oriented points.

    python -m backend.train sap --data procedural --out runs/sap --steps 20000
    python -m backend.train sap --model models/default.safetensors --data procedural --out runs/sap

Each step takes clean oriented surface samples of a batch of training shapes (M points with
outward normals: the mesh's own for procedural shapes, else estimated once per shape from its
stored points), draws N inputs from them and minimizes the indicator loss of
backend.sap.training: the Poisson indicator of the network's oriented points against the
indicator of the clean surface. The inputs are noisy surface points (Gaussian noise of --noise
times each shape's largest side) or, with --model, that LION model's reconstructions of them
plus that noise: what its decoder makes is what the network must mesh. --template-share takes a
share of them through the model's point template, which makes the fresh samples. The output,
RUN/sap.safetensors, is what `python -m backend reconstruct --network` and the server's
reconstruct op load.
"""
import json
import os

import numpy as np
import torch

from backend.sap.network import NetworkConfig, PointsToOrientedPoints, save_network
from backend.sap.normals import estimate_oriented_normals
from backend.sap.poisson import DEFAULT_RESOLUTION, DEFAULT_SIGMA, check_resolution
from backend.sap.training import (indicator_loss, make_reconstructed_training_batch, make_training_batch,
                                  to_unit_cube)
from backend.train import runtime

NETWORK_FILE = "sap.safetensors"
DEFAULT_LR = 5e-4
DEFAULT_NOISE = 0.005  # SAP's training noise, as a fraction of the shape's size
DEFAULT_INPUT_POINTS = 2048  # LION's output size: what the network sees at inference
DEFAULT_SURFACE_POINTS = 8192


class OrientedSurfaces:
    """Clean oriented surface samples over a training dataset.

    Item i is float32 [M, 6]: M points of shape i (normalized like the dataset's items) and
    their outward unit normals. Normals are estimated once per shape from all its stored points
    and kept; each epoch draws a fresh subset from a generator seeded by (seed, epoch, index),
    so batches stay a pure function of the step, as exact resume needs.
    """

    def __init__(self, dataset, surface_points, seed):
        self.dataset, self.surface_points, self.seed = dataset, surface_points, seed
        self._oriented = {}

    def __len__(self):
        return len(self.dataset)

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def oriented_points(self, index):
        """float64 [P, 6]: every stored point of shape `index`, normalized, with its normal."""
        if index not in self._oriented:
            center, scale = self.dataset.shape_statistics(index)
            points = (self.dataset.shapes.points(index).astype(np.float64) - center) / scale
            self._oriented[index] = np.concatenate([points, self._normals(index, points, scale)], axis=1)
        return self._oriented[index]

    def _normals(self, index, points, scale):
        """Unit normals [P, 3] of the normalized points: the mesh's own where the shapes come from
        meshes that know them (procedural), else estimated from the points. Estimates flip on
        thin parts (more than half of one table's points, a fifth of a lamp's), which taught the
        network to drop legs."""
        surface_normals = getattr(self.dataset.shapes, "surface_normals", None)
        if surface_normals is None:
            return estimate_oriented_normals(points)
        # p' = (p - c) / s maps a plane's normal n to n·s (s per axis or one number), renormalized.
        normals = surface_normals(index).astype(np.float64) * np.asarray(scale, np.float64).reshape(1, -1)
        return normals / np.linalg.norm(normals, axis=1, keepdims=True)

    def __getitem__(self, index):
        oriented = self.oriented_points(index)
        rng = np.random.default_rng([self.seed, self.dataset.epoch, index, 1])
        chosen = rng.choice(len(oriented), self.surface_points, replace=len(oriented) < self.surface_points)
        return torch.from_numpy(oriented[chosen].astype(np.float32))


def parse_arguments(argv):
    parser = runtime.stage_parser("sap", __doc__, grad_clip=0.0)
    parser.add_argument("--network-config", help="JSON file of backend.sap.network.NetworkConfig fields "
                                                 "(default: the built-in sizes)")
    parser.add_argument("--model", help="a LION model (.safetensors): train on its VAE's reconstructions of the "
                                        "data (normalized as that model's was) instead of noisy surface points")
    parser.add_argument("--template-share", type=float, default=0.0,
                        help="with --model: the share of shapes (0..1) whose latent points come from the model's "
                             "point template, as fresh samples' do, instead of from the VAE's encoder")
    parser.add_argument("--input-points", type=int, default=DEFAULT_INPUT_POINTS,
                        help="noisy points per shape the network sees")
    parser.add_argument("--surface-points", type=int, default=DEFAULT_SURFACE_POINTS,
                        help="clean oriented points per shape for the target indicator")
    parser.add_argument("--noise", type=float, default=DEFAULT_NOISE,
                        help="input noise standard deviation, as a fraction of each shape's largest side")
    parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="Poisson grid (power of two, 32..256)")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA, help="Poisson smoothing")
    args = parser.parse_args(argv)
    try:
        check_resolution(args.resolution)
    except ValueError as error:
        parser.error(f"--resolution: {error}")
    if not 1 <= args.input_points <= args.surface_points:
        parser.error("--input-points must be between 1 and --surface-points")
    if not 0.0 <= args.template_share <= 1.0 or (args.template_share and not args.model):
        parser.error("--template-share must be in [0, 1] and needs --model")
    if args.noise < 0 or not args.sigma > 0:
        parser.error("--noise must be >= 0 and --sigma > 0")
    return args


def load_network_config(path):
    if path is None:
        return NetworkConfig()
    with open(path) as f:
        return NetworkConfig(**json.load(f))


def atomic_save_network(run_dir, network):
    """Write RUN/sap.safetensors atomically: a crash mid-write leaves the previous one intact."""
    path = os.path.join(run_dir, NETWORK_FILE)
    temporary = path + ".tmp.safetensors"
    save_network(network, temporary)
    os.replace(temporary, path)
    return path


def main(argv=None):
    args = parse_arguments(argv)
    dist = runtime.start_run(args)

    if args.model:
        lion, _, dataset = runtime.load_trained_model(args.model, args, dist)
        autoencoder = lion.vae.eval().requires_grad_(False)
        template = lion.point_template
        if template is not None:
            template.eval().requires_grad_(False)
        elif args.template_share:
            raise SystemExit(f"--template-share: {args.model} has no point template")
    else:
        dataset, autoencoder, template = runtime.build_dataset(args, args.input_points), None, None
    surfaces = OrientedSurfaces(dataset, args.surface_points, args.seed)

    def make_batch(oriented, generator):
        points, normals = oriented[..., :3].to(dist.device), oriented[..., 3:].to(dist.device)
        if autoencoder is None:
            return make_training_batch(points, normals, args.input_points, args.noise, generator)
        return make_reconstructed_training_batch(autoencoder, points, normals, args.input_points, args.noise,
                                                 generator, template, args.template_share)

    torch.manual_seed(args.seed)  # the same initial weights on every rank and every run
    network = PointsToOrientedPoints(load_network_config(args.network_config)).to(dist.device)
    trainer = dist.wrap(network)
    optimizer = torch.optim.Adam(network.parameters(), lr=args.lr or DEFAULT_LR)
    batches = runtime.BatchOrder(surfaces, args.batch_size, args.seed, dist)
    preview = torch.stack([surfaces[i] for i in range(min(4, len(surfaces)))])

    def train_step(step):
        oriented = batches.batch(step)
        generator = runtime.step_generator(args.seed, dist.rank, step, "cpu")
        loss = indicator_loss(trainer, make_batch(oriented, generator), args.resolution, args.sigma)
        runtime.check_finite(loss, step)
        return runtime.optimize(optimizer, loss, network.parameters(), args.grad_clip, {"loss": loss.item()})

    def save(step):
        atomic_save_network(args.out, network)
        render_oriented_points(network, make_batch(preview, torch.Generator().manual_seed(args.seed)), args, step)

    network.train()
    return runtime.run_training(args, dist, {"network": network, "optimizer": optimizer}, network, train_step, save)


@torch.no_grad()
def render_oriented_points(network, batch, args, step):
    """The inputs (top row) and the network's oriented points for them (bottom row), each in
    its shape's unit cube. batch: the preview shapes' TrainingBatch, on the network's device."""
    noisy = to_unit_cube(batch)[0]
    network.eval()
    oriented_points, _ = network(noisy)
    network.train()
    return runtime.save_render(args.out, "sap", step, (*noisy, *oriented_points), columns=len(noisy))


if __name__ == "__main__":
    raise SystemExit(main())
