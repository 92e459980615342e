"""Stage 1: train LION's hierarchical VAE.

    python -m backend.train vae --config tiny --data procedural --out runs/vae --steps 20000
    torchrun --nproc_per_node 8 -m backend.train vae --config paper --data shapenet:PC15K --categories chair ...

Loss (LION, stage 1): L1 reconstruction with point-index correspondence (the decoder returns
point i for input point i), summed over points and coordinates, plus a KL weight times the
KL divergences of z0 and h0 to N(0, I). The KL weight ramps linearly from 1e-7 to 0.5 over the
first half of training (--kl-max, --kl-anneal-portion), so the latents first learn to
reconstruct, then to be regular. --kl-shape-scale weighs the z0 term apart (LION: 1): a z0
that costs less than h0 is what keeps it in use when the latent points are noisy.

--init MODEL starts from an earlier model's VAE weights (its config and data normalization
too), so that runs on a CPU add up; --kl-start then sets where the ramp begins.
--latent-point-noise S sets config.vae.latent_point_noise: extra noise on the sampled latent
points' xyz, which the decoder learns to remove and the point prior is later trained on.
--decoder-only trains the decoder alone, so the encoders' latents (and the priors and voxel-guide
encoder fitted to them) stay valid.
"""
import os

import torch

from backend.config import get_config, validate_config
from backend.train import runtime

KL_WEIGHT_START = 1e-7
KL_WEIGHT_END = 0.5
DEFAULT_LR = 1e-3


def gaussian_kl(mean, log_sigma):
    """KL(N(mean, sigma^2) || N(0, I)) summed over all but the batch dimension -> [B]."""
    kl = 0.5 * (mean.square() + torch.exp(2 * log_sigma) - 1.0) - log_sigma
    return kl.flatten(1).sum(dim=1)


def vae_loss(vae, points, kl_weight, generator, kl_shape_scale=1.0):
    """(loss, scalars) of one batch: points float [B, N, 3], normalized."""
    reconstruction, encoding = vae(points, generator=generator)
    reconstruction_l1 = (reconstruction - points).abs().flatten(1).sum(dim=1).mean()
    kl_shape = gaussian_kl(encoding.shape_latent_mean, encoding.shape_latent_log_sigma).mean()
    kl_points = gaussian_kl(encoding.latent_points_mean, encoding.latent_points_log_sigma).mean()
    loss = reconstruction_l1 + kl_weight * (kl_shape_scale * kl_shape + kl_points)
    scalars = {"loss": loss.item(), "reconstruction_l1": reconstruction_l1.item(),
               "kl_shape_latent": kl_shape.item(), "kl_latent_points": kl_points.item(), "kl_weight": kl_weight,
               **latent_usage(encoding)}
    return loss, scalars


def latent_usage(encoding):
    """How much the latents carry, from one batch: the spread of z0's posterior mean across the
    shapes (per dimension) against its posterior sigma, and the latent points' posterior sigma.
    A z0 whose spread is far below its sigma has collapsed: the decoder cannot tell shapes apart
    by it."""
    with torch.no_grad():
        z_mean = encoding.shape_latent_mean
        spread = z_mean.std(dim=0).mean().item() if z_mean.shape[0] > 1 else 0.0
        return {"z0_spread": spread, "z0_sigma": encoding.shape_latent_log_sigma.exp().mean().item(),
                "h0_sigma": encoding.latent_points_log_sigma.exp().mean().item()}


def parse_arguments(argv):
    parser = runtime.stage_parser("vae", __doc__, grad_clip=10.0)
    parser.add_argument("--config", default="tiny", help="model config: 'tiny', 'paper' or a JSON file")
    parser.add_argument("--kl-max", type=float, default=KL_WEIGHT_END, help=f"final KL weight (LION: {KL_WEIGHT_END})")
    parser.add_argument("--kl-anneal-portion", type=float, default=0.5,
                        help="fraction of --steps over which the KL weight ramps up (LION: 0.5)")
    parser.add_argument("--kl-start", type=float, default=KL_WEIGHT_START, help="KL weight at step 0")
    parser.add_argument("--kl-shape-scale", type=float, default=1.0,
                        help="factor on the z0 KL term (LION: 1)")
    parser.add_argument("--init", help="start from this model's VAE (config and normalization included)")
    parser.add_argument("--decoder-only", action="store_true",
                        help="train the decoder alone: the encoders, and so the latents the priors learned, stay as --init has them")
    parser.add_argument("--latent-point-noise", type=float,
                        help="extra noise on the sampled latent points' xyz (config.vae.latent_point_noise; "
                             "default: the config's or --init's)")
    return parser.parse_args(argv)


def load_config(name):
    if os.path.isfile(name):
        from backend.config import LionConfig

        with open(name) as f:
            return LionConfig.from_json(f.read())
    return get_config(name)


def main(argv=None):
    from backend.models import LionModel

    args = parse_arguments(argv)
    dist = runtime.start_run(args)

    if args.init:
        model, _, dataset = runtime.load_trained_model(args.init, args, dist)
        model.voxel_encoder = None  # fine-tuned from this VAE later, by its own stage
        model.drop_point_template()  # trained on the old VAE's latents; retrained by its own stage
    else:
        config = load_config(args.config)
        dataset = runtime.build_dataset(args, config.vae.num_points)
        torch.manual_seed(args.seed)  # the same initial weights on every rank and every run
        model = LionModel(config, dataset.normalization).to(dist.device)
    if args.latent_point_noise is not None:
        model.config.vae.latent_point_noise = args.latent_point_noise
        validate_config(model.config)
    if args.decoder_only:
        if not args.init:
            raise SystemExit("--decoder-only needs --init: a trained VAE whose encoders it keeps")
        for part in (model.vae.shape_latent_encoder, model.vae.latent_point_encoder):
            part.requires_grad_(False)
    trained = [p for p in model.vae.parameters() if p.requires_grad]
    vae = dist.wrap(model.vae)
    optimizer = torch.optim.Adam(trained, lr=args.lr or DEFAULT_LR)
    batches = runtime.BatchOrder(dataset, args.batch_size, args.seed, dist)
    preview = torch.stack([dataset[i] for i in range(min(4, len(dataset)))]).to(dist.device)
    data_facts = runtime.data_metadata(dataset)

    def train_step(step):
        points = batches.batch(step).to(dist.device)
        runtime.seed_step(args.seed, dist.rank, step)
        generator = runtime.step_generator(args.seed, dist.rank, step, dist.device)
        kl_weight = runtime.linear_ramp(step, args.kl_start, args.kl_max, int(args.steps * args.kl_anneal_portion))
        loss, scalars = vae_loss(vae, points, kl_weight, generator, args.kl_shape_scale)
        runtime.check_finite(loss, step)
        return runtime.optimize(optimizer, loss, trained, args.grad_clip, scalars)

    def save(step):
        runtime.atomic_save_model(args.out, model, dataset=args.data, step=step,
                                  extra={"stage": "vae", "trained_parts": ["vae"], **data_facts,
                                         **({"continued_from": args.init} if args.init else {})})
        render_reconstructions(model, preview, args.out, step)

    model.train()
    return runtime.run_training(args, dist, {"model": model, "optimizer": optimizer}, model.vae, train_step, save)


@torch.no_grad()
def render_reconstructions(model, points, run_dir, step):
    """Inputs (top row) and their reconstructions from posterior means (bottom row)."""
    model.eval()
    encoding = model.vae.encode(points, sample=False)
    reconstruction = model.vae.decode(encoding.shape_latent, encoding.latent_points)
    model.train()
    return runtime.save_render(run_dir, "reconstruction", step, (*points, *reconstruction), columns=len(points))


if __name__ == "__main__":
    raise SystemExit(main())
