"""Fine-tune copies of the VAE's encoders on voxel guides, for voxel-guided generation.

    python -m backend.train voxel-encoder --model runs/prior/model.safetensors --data procedural --out runs/voxel

LION turns a coarse voxel guide into shapes by encoding it and running diffuse-denoise; its
encoders were only ever shown clean points, so they are fine-tuned to map coarse inputs to the
latents of clean shapes. Each training shape becomes a solid voxel guide at a random resolution
(--min-resolution..--max-resolution cells along its longest side), N points are drawn on the
guide's outside faces, and the guide points are moved so that the guide's bounding box is the
shape's (at inference the guide's box is all that frames it). The frozen VAE encoders give the
targets: the posterior means of the clean points. The fine-tuned copies see the guide points.

Loss: mean squared error between the z0 means, plus a matched error on the latent points:
guide points carry no index correspondence to clean points, so each fine-tuned latent point is
compared with the target latent point nearest in position, and each target with the nearest
fine-tuned one (both directions, so the latents must cover the whole shape). The decoder and
the priors are untouched. The saved model is the input model plus `voxel_encoder.*` (a voxel
encoder already in the input is replaced: fine-tuning always starts from the VAE's encoders).
The released LION code has no such stage; this follows the paper's description of fine-tuning
the encoders on voxelized shapes, with targets from the frozen encoders on the clean shapes.
"""
import numpy as np
import torch
from torch.nn import functional as F

from backend.models.lion import VoxelGuideEncoder
from backend.train import runtime
from backend.voxels import voxel_surface_points, voxelize

DEFAULT_LR = 1e-4
DEFAULT_MIN_RESOLUTION = 8
DEFAULT_MAX_RESOLUTION = 32
PREVIEW_RESOLUTION = 16


class GuidedShapes:
    """Pairs of (clean points, guide points) over a training dataset.

    Item i is float32 [2, N, 3]: the dataset's item i (normalized clean points) and N points on
    a solid voxel guide of that shape, framed by the clean points' bounding box. The guide is
    voxelized from every stored point of the shape (a 2048-point subset would leave holes at
    fine resolutions). Resolution and guide points come from a generator seeded by
    (seed, epoch, index), so batches stay a pure function of the step, as exact resume needs.
    """

    def __init__(self, dataset, min_resolution, max_resolution, seed):
        self.dataset, self.seed = dataset, seed
        self.min_resolution, self.max_resolution = min_resolution, max_resolution

    def __len__(self):
        return len(self.dataset)

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index):
        clean = self.dataset[index]
        rng = np.random.default_rng([self.seed, self.dataset.epoch, index, 1])
        resolution = int(rng.integers(self.min_resolution, self.max_resolution + 1))
        guide = guide_points(self.stored_points(index), clean.numpy(), resolution, rng)
        return torch.stack([clean, torch.from_numpy(guide)])

    def stored_points(self, index):
        """float64 [P, 3]: every stored point of shape `index`, normalized like the items."""
        center, scale = self.dataset.shape_statistics(index)
        return (self.dataset.shapes.points(index).astype(np.float64) - center) / scale


def guide_points(shape_points, clean_points, resolution, rng):
    """float32 [N, 3] points on a solid voxel guide of `shape_points` (float [P, 3]), N the
    count of `clean_points` (float [N, 3]), moved and uniformly scaled so that their bounding
    box has the centre and longest side of the clean points' box."""
    guide = voxelize(shape_points, resolution, filled=True)
    points = voxel_surface_points(guide.centers, guide.voxel_size, len(clean_points), rng)
    return fit_box(points, clean_points).astype(np.float32)


def fit_box(points, reference):
    """`points` float [N, 3] moved and uniformly scaled so their bounding box has the centre and
    longest side of `reference`'s (float [M, 3])."""
    low, high = points.min(axis=0), points.max(axis=0)
    reference_low, reference_high = reference.min(axis=0), reference.max(axis=0)
    scale = (reference_high - reference_low).max() / max((high - low).max(), 1e-12)
    return (points - (low + high) / 2) * scale + (reference_low + reference_high) / 2


def nearest_indices(queries, points):
    """int64 [B, M]: for each of queries float [B, M, C], the index of its nearest point among
    points float [B, N, C] (Euclidean). |p|² - 2 q·p ranks the points as the distance does
    (|q|² is the same for all of them), and a minimum over the last dimension is several times
    faster on the CPU than torch.cdist followed by argmin over the middle one."""
    scores = torch.baddbmm((points * points).sum(-1).unsqueeze(1), queries, points.transpose(1, 2), alpha=-2)
    return scores.min(dim=2).indices


def matched_latent_point_loss(predicted, target, match_all_channels=False):
    """Mean squared error between two sets of latent points float [B, N, 3 + Dh] without index
    correspondence: each point is paired with the nearest point of the other set (by xyz, or by
    all channels when match_all_channels), in both directions. Returns a scalar tensor."""
    matched = slice(None) if match_all_channels else slice(0, 3)
    with torch.no_grad():
        nearest_target = nearest_indices(predicted[..., matched], target[..., matched])
        nearest_predicted = nearest_indices(target[..., matched], predicted[..., matched])
    channels = predicted.shape[-1]
    target_for_predicted = torch.gather(target, 1, nearest_target.unsqueeze(-1).expand(-1, -1, channels))
    predicted_for_target = torch.gather(predicted, 1, nearest_predicted.unsqueeze(-1).expand(-1, -1, channels))
    return F.mse_loss(predicted, target_for_predicted) + F.mse_loss(predicted_for_target, target)


def voxel_encoder_loss(encoder, vae, clean, guide):
    """(loss, scalars) of one batch: clean and guide points float [B, N, 3], normalized."""
    with torch.no_grad():
        target = vae.encode(clean, sample=False)
    shape_latent, latent_points = encoder(guide)
    loss_shape = F.mse_loss(shape_latent, target.shape_latent_mean)
    loss_points = matched_latent_point_loss(latent_points, target.latent_points_mean)
    loss = loss_shape + loss_points
    scalars = {"loss": loss.item(), "loss_shape_latent": loss_shape.item(), "loss_latent_points": loss_points.item()}
    return loss, scalars


def parse_arguments(argv):
    parser = runtime.stage_parser("voxel-encoder", __doc__, grad_clip=1.0)
    parser.add_argument("--model", required=True, help="model.safetensors of a trained VAE or prior run")
    parser.add_argument("--min-resolution", type=int, default=DEFAULT_MIN_RESOLUTION,
                        help="coarsest guide: voxels along a shape's longest side")
    parser.add_argument("--max-resolution", type=int, default=DEFAULT_MAX_RESOLUTION,
                        help="finest guide: voxels along a shape's longest side")
    args = parser.parse_args(argv)
    if not 1 <= args.min_resolution <= args.max_resolution <= 256:
        parser.error("--min-resolution and --max-resolution must satisfy 1 <= min <= max <= 256")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    dist = runtime.start_run(args)

    model, source_metadata, dataset = runtime.load_trained_model(args.model, args, dist)
    shapes = GuidedShapes(dataset, args.min_resolution, args.max_resolution, args.seed)
    model.vae.requires_grad_(False).eval()
    model.voxel_encoder = VoxelGuideEncoder(model.vae).requires_grad_(True)
    encoder = dist.wrap(model.voxel_encoder)
    optimizer = torch.optim.Adam(model.voxel_encoder.parameters(), lr=args.lr or DEFAULT_LR)
    batches = runtime.BatchOrder(shapes, args.batch_size, args.seed, dist)
    preview = preview_pairs(shapes, dist.device)

    def train_step(step):
        pairs = batches.batch(step).to(dist.device)
        runtime.seed_step(args.seed, dist.rank, step)
        loss, scalars = voxel_encoder_loss(encoder, model.vae, pairs[:, 0], pairs[:, 1])
        runtime.check_finite(loss, step)
        return runtime.optimize(optimizer, loss, model.voxel_encoder.parameters(), args.grad_clip, scalars)

    def save(step):
        runtime.atomic_save_model(args.out, model, dataset=args.data, step=step,
                                  extra={"stage": "voxel-encoder",
                                         "trained_parts": runtime.trained_parts(source_metadata, "voxel_encoder"),
                                         "source_model_step": source_metadata.get("step"),
                                         "guide_resolutions": [args.min_resolution, args.max_resolution],
                                         **runtime.inherited_metadata(source_metadata)})
        render_guided_reconstructions(model, preview, args.out, step)

    model.voxel_encoder.train()
    parts = {"voxel_encoder": model.voxel_encoder, "optimizer": optimizer}
    return runtime.run_training(args, dist, parts, model.voxel_encoder, train_step, save)


def preview_pairs(shapes, device, count=4):
    """float32 [count, 2, N, 3]: the first shapes and their guides at PREVIEW_RESOLUTION."""
    pairs = []
    for index in range(min(count, len(shapes))):
        clean = shapes.dataset[index]
        rng = np.random.default_rng([shapes.seed, index, 2])
        guide = guide_points(shapes.stored_points(index), clean.numpy(), PREVIEW_RESOLUTION, rng)
        pairs.append(torch.stack([clean, torch.from_numpy(guide)]))
    return torch.stack(pairs).to(device)


@torch.no_grad()
def render_guided_reconstructions(model, pairs, run_dir, step):
    """Guide points (top row) and the shapes decoded from their voxel-encoder latents (bottom)."""
    model.voxel_encoder.eval()
    guides = pairs[:, 1]
    shape_latent, latent_points = model.voxel_encoder(guides)
    decoded = model.vae.decode(shape_latent, latent_points)
    model.voxel_encoder.train()
    return runtime.save_render(run_dir, "voxel_guides", step, (*guides, *decoded), columns=len(guides))


if __name__ == "__main__":
    raise SystemExit(main())
