"""Stage 2: train LION's two latent DDMs on the encodings of a frozen, trained VAE.

    python -m backend.train prior --vae runs/vae/model.safetensors --data procedural --out runs/prior \
        --prediction v --class-conditional

1. The training set is encoded once by the frozen VAE: for every shape, --encodings-per-shape
   posterior draws, each a z0 sample of q(z0|x) (from its own random subset of points) and
   the posterior (mean, log sigma) of h0 given it. This is the data of both priors, so a step
   costs the priors' networks only, not the VAE's encoders.
2. Each step trains the h0 prior on one batch of h0 posterior samples given their z0, and
   the z0 prior (an MLP on 128 numbers, far cheaper) --shape-steps-per-step times on larger
   batches of fresh z0 posterior samples: the z0 prior gets many more updates.

Pipelines encode shapes to posterior samples too (backend.pipelines.encode), so variations,
interpolation and inversion feed the priors the latents they were trained on.

--prediction chooses what the networks predict (backend.diffusion: eps, v, or LION's mixed
score; --mixing-logit-init and --mixing-logit-lr-scale let the logits move in a short run).
--class-conditional gives the z0 prior the data's categories, with labels dropped at
--label-dropout for classifier-free guidance. Both are recorded in the saved model's config,
with how often each category occurs in the data (what generation with no category asked draws).
--continue-priors keeps the priors (and their config) of the --vae model and trains them on.
--point-prior chooses the h0 prior's architecture (config.POINT_PRIORS): for new priors, or with
--continue-priors for the kept one where its weights carry over (other radii; xyz added to the
last stage, whose new weights start at zero).
--low-t-share draws that share of the h0 prior's examples from the steps --low-t-min..--low-t-max
(by default the low-noise steps 1..400; from step --low-t-from-step on): the fine denoising that
variations and the last sampling steps need is what a short CPU run learns last.

Each prior has its own Adam optimizer (--lr-decay cosine lets the rates fall to 0 by the last
step: the annealing a continued round ends on); an exponential moving average of both (with warm-up,
runtime.EMA) is what the saved model carries. The data normalization is the VAE's.
"""
import collections
import dataclasses
import os

import torch

from backend import diffusion, pipelines
from backend.config import POINT_PRIORS, PREDICTIONS, get_point_prior
from backend.models.priors import LatentPointPrior, ShapeLatentPrior
from backend.models.pvcnn import widen_for_xyz_in_finest_skip
from backend.models.vae import sample_gaussian
from backend.train import runtime

DEFAULT_LR = 2e-4
DEFAULT_EMA = 0.9999
ENCODINGS_FILE = "encodings.pt"


class Priors(torch.nn.Module):
    """Both priors as one module, so one EMA and one state entry serve them."""

    def __init__(self, model):
        super().__init__()
        self.shape_prior, self.point_prior = model.shape_prior, model.point_prior


class PriorLoss(torch.nn.Module):
    """The denoising loss of one prior as a module, so that a DDP wrapper sees every parameter
    it uses (the mixing logits are used outside the network): forward(x0, condition, generator),
    the condition being the z0 prior's labels or the h0 prior's z0."""

    def __init__(self, prior, schedule, prediction):
        super().__init__()
        self.prior, self.schedule, self.prediction = prior, schedule, prediction

    def forward(self, x0, condition, generator, t=None):
        return diffusion.training_loss(self.schedule, lambda x, index: self.prior(x, index, condition), x0,
                                       prediction=self.prediction, mixing_logit=getattr(self.prior, "mixing_logit", None),
                                       t=t, generator=generator)


def training_steps(count, num_steps, low_share, low_max, generator, low_min=1):
    """Diffusion steps for one batch: uniform on 1..T, except a share `low_share` uniform on
    low_min..low_max, by default the low-noise steps where the h0 prior learns the fine denoising
    that variations and the last sampling steps rest on (int64 [count])."""
    uniform = torch.randint(1, num_steps + 1, (count,), generator=generator)
    low = torch.randint(low_min, low_max + 1, (count,), generator=generator)
    chosen = torch.rand(count, generator=generator) < low_share
    return torch.where(chosen, low, uniform)


def continue_point_prior(model, point_prior):
    """Continue the model's h0 prior in the architecture `point_prior`, which must hold weights
    of the same shapes (other grouping radii, say), or its layout with xyz added to the finest
    skip (config.UNetConfig.xyz_in_finest_skip), whose new weights start at zero."""
    config = model.config
    old = model.point_prior
    new = LatentPointPrior(point_prior, config.latent_point_dim, config.vae.shape_latent_dim,
                           config.vae.adaptive_norm_init_scale, num_points=config.vae.num_points,
                           mixing_logit_init=0.0 if hasattr(old, "mixing_logit") else None)
    state = old.state_dict()
    if point_prior.unet.xyz_in_finest_skip and not config.point_prior.unet.xyz_in_finest_skip:
        state = widen_for_xyz_in_finest_skip(state, new.unet, prefix="unet.")
    try:
        new.load_state_dict(state)
    except RuntimeError as error:
        raise SystemExit(f"--point-prior with --continue-priors: the model's h0 prior does not fit that architecture "
                         f"(only radii, neighbours or xyz in the finest skip may change): {error}") from None
    model.config = dataclasses.replace(config, point_prior=point_prior)
    model.point_prior = new.to(next(old.parameters()).device)


def rebuild_priors(model, prediction=None, categories=None, mixing_logit_init=None, point_prior=None):
    """Give `model` fresh priors for a new parameterization, category list and/or h0-prior
    architecture (a LatentPointPriorConfig); the config records them, so every later caller
    reads them from there."""
    config = model.config
    if point_prior is not None:
        config = dataclasses.replace(config, point_prior=point_prior)
    diffusion_config = dataclasses.replace(
        config.diffusion, prediction=prediction or config.diffusion.prediction,
        mixing_logit_init=config.diffusion.mixing_logit_init if mixing_logit_init is None else mixing_logit_init)
    shape_config = dataclasses.replace(config.shape_prior,
                                       categories=list(categories) if categories is not None else config.shape_prior.categories)
    model.config = dataclasses.replace(config, diffusion=diffusion_config, shape_prior=shape_config)
    logit_init = diffusion_config.mixing_logit_init if diffusion_config.prediction == "mixed" else None
    device = next(model.vae.parameters()).device
    model.shape_prior = ShapeLatentPrior(shape_config, config.vae.shape_latent_dim, logit_init).to(device)
    model.point_prior = LatentPointPrior(config.point_prior, config.latent_point_dim, config.vae.shape_latent_dim,
                                         config.vae.adaptive_norm_init_scale, num_points=config.vae.num_points,
                                         mixing_logit_init=logit_init).to(device)


@torch.no_grad()
def encode_dataset(vae, dataset, categories, draws, seed, device, batch_size=16):
    """The priors' training data: a dict of tensors over S = len(dataset)·draws rows:
    z_mean, z_log_sigma [S, Dz] (q(z0|x)), z [S, Dz] (the z0 sample h0 was encoded with),
    h_mean, h_log_sigma [S, N, 3 + Dh] (q(h0|x, z)), label int64 [S] (index in `categories`,
    or -1 without categories). Draw d of shape i sees the points of epoch d of the dataset."""
    rows = {key: [] for key in ("z_mean", "z_log_sigma", "z", "h_mean", "h_log_sigma", "label")}
    vae.eval()
    for draw in range(draws):
        dataset.set_epoch(draw)
        generator = torch.Generator().manual_seed(seed * 1000 + draw)
        for first in range(0, len(dataset), batch_size):
            indices = range(first, min(first + batch_size, len(dataset)))
            points = torch.stack([dataset[i] for i in indices]).to(device)
            encoding = vae.encode(points, sample=True, generator=generator)
            rows["z_mean"].append(encoding.shape_latent_mean)
            rows["z_log_sigma"].append(encoding.shape_latent_log_sigma)
            rows["z"].append(encoding.shape_latent)
            rows["h_mean"].append(encoding.latent_points_mean)
            rows["h_log_sigma"].append(encoding.latent_points_log_sigma)
            rows["label"].append(torch.tensor([categories.index(dataset.category(i)) if categories else -1
                                               for i in indices], dtype=torch.int64))
    dataset.set_epoch(0)
    return {key: torch.cat(value).cpu() for key, value in rows.items()}


def load_or_encode(args, dist, vae, dataset, categories):
    """The encodings of RUN/encodings.pt, made once (a resumed run reads them back)."""
    path = os.path.join(args.out, ENCODINGS_FILE)
    if os.path.isfile(path):
        return torch.load(path, weights_only=True)
    encodings = encode_dataset(vae, dataset, categories, args.encodings_per_shape, args.seed, dist.device)
    if dist.is_main:
        torch.save(encodings, path + ".tmp")
        os.replace(path + ".tmp", path)
    return encodings


def category_shares(counts, categories):
    """The share of each of `categories` among the shapes counted per category in `counts`:
    the model's p(category), which generation with no category asked draws from."""
    total = sum(counts.values())
    return [counts[name] / total for name in categories]


def drop_labels(labels, no_category, rate, generator):
    """Labels with a fraction `rate` replaced by the "no category" label (classifier-free
    guidance trains the unconditional prediction on those)."""
    dropped = torch.rand(labels.shape, generator=generator, device=generator.device).to(labels.device) < rate
    return torch.where(dropped, torch.full_like(labels, no_category), labels)


def update_shape_prior(loss, optimizer, prior, z0, labels, args, generator, step, scalars):
    """One update of a z0 prior on z0 float [B, Dz] with their category labels (int64 [B], or
    None without categories), dropped at args.label_dropout for classifier-free guidance;
    `loss` is its PriorLoss (or that wrapped for DDP). Returns the loss."""
    if labels is not None:
        labels = drop_labels(labels, prior.no_category, args.label_dropout, generator).to(z0.device)
    loss_shape = loss(z0, labels, generator)
    runtime.check_finite(loss_shape, step)
    runtime.optimize(optimizer, loss_shape, prior.parameters(), args.grad_clip, scalars, "grad_norm_shape")
    return loss_shape


def parse_arguments(argv):
    parser = runtime.stage_parser("prior", __doc__, grad_clip=1.0)
    parser.add_argument("--vae", required=True, help="model.safetensors of a trained VAE run")
    parser.add_argument("--ema", type=float, default=DEFAULT_EMA, help="EMA decay of the prior weights")
    parser.add_argument("--prediction", choices=PREDICTIONS, help="what the priors predict (default: the --vae model's)")
    parser.add_argument("--mixing-logit-init", type=float, help="mixed score: the logits' start (LION: -6)")
    parser.add_argument("--mixing-logit-lr-scale", type=float, default=1.0,
                        help="mixed score: learning rate of the logits over the networks'")
    parser.add_argument("--class-conditional", action="store_true", help="condition the z0 prior on the data's categories")
    parser.add_argument("--label-dropout", type=float, default=0.2, help="share of unlabelled z0 prior examples")
    parser.add_argument("--continue-priors", action="store_true", help="train on the priors of the --vae model")
    parser.add_argument("--point-prior", choices=sorted(POINT_PRIORS),
                        help="h0-prior architecture (default: the --vae model's)")
    parser.add_argument("--encodings-per-shape", type=int, default=4, help="posterior draws per training shape")
    parser.add_argument("--shape-steps-per-step", type=int, default=4, help="z0 prior updates per step")
    parser.add_argument("--shape-batch-size", type=int, default=64, help="z0 samples per z0 prior update")
    parser.add_argument("--shape-lr", type=float, help="z0 prior learning rate (default: --lr)")
    parser.add_argument("--lr-decay", choices=("constant", "cosine"), default="constant",
                        help="both priors' learning rates: constant, or falling to 0 at --steps along half a cosine")
    parser.add_argument("--low-t-share", type=float, default=0.0,
                        help="h0 prior: share of examples at steps --low-t-min..--low-t-max (default 0: uniform)")
    parser.add_argument("--low-t-min", type=int, default=1, help="h0 prior: the lowest step of that share")
    parser.add_argument("--low-t-max", type=int, default=400, help="h0 prior: the highest step of that share")
    parser.add_argument("--low-t-from-step", type=int, default=0, help="h0 prior: training step the low-noise share starts at")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    dist = runtime.start_run(args)

    model, vae_metadata, dataset = runtime.load_trained_model(args.vae, args, dist)
    model.voxel_encoder = None
    # Without it, the renders and samples of this run show the priors being trained; the
    # template (fitted to the VAE, not the priors) is fitted again by its own stage afterwards.
    model.drop_point_template()
    model.vae.requires_grad_(False).eval()
    counts = collections.Counter(dataset.category(i) for i in range(len(dataset)))  # shapes per category
    categories = sorted(counts) if args.class_conditional else []
    if not args.continue_priors:
        torch.manual_seed(args.seed)  # the same initial weights on every rank and every run
        rebuild_priors(model, args.prediction, categories, args.mixing_logit_init,
                       get_point_prior(args.point_prior) if args.point_prior else None)
    elif args.point_prior:
        continue_point_prior(model, get_point_prior(args.point_prior))
    if args.class_conditional and model.categories != categories:
        raise SystemExit(f"--continue-priors: the model's categories {model.categories} are not the data's {categories}")
    categories = model.categories
    if categories:
        model.config.shape_prior.category_shares = category_shares(counts, categories)
    if not 1 <= args.low_t_min <= args.low_t_max <= model.schedule.num_steps:
        raise SystemExit(f"--low-t-min/--low-t-max: need 1 <= {args.low_t_min} <= {args.low_t_max} "
                         f"<= {model.schedule.num_steps} (the model's diffusion steps)")
    encodings = load_or_encode(args, dist, model.vae, dataset, categories)
    priors = Priors(model)
    schedule = model.schedule
    prediction = model.config.diffusion.prediction
    losses = {"shape": dist.wrap(PriorLoss(model.shape_prior, schedule, prediction)),
              "points": dist.wrap(PriorLoss(model.point_prior, schedule, prediction))}
    lr = args.lr or DEFAULT_LR
    optimizers = {
        "shape": torch.optim.Adam(_groups(model.shape_prior, args.shape_lr or lr, args.mixing_logit_lr_scale)),
        "points": torch.optim.Adam(_groups(model.point_prior, lr, args.mixing_logit_lr_scale)),
    }
    runtime.keep_base_lr(optimizers.values())
    ema = runtime.EMA(priors, args.ema)
    rows = encodings["z"].shape[0]

    def take(generator, count):
        return torch.randint(0, rows, (count,), generator=generator)

    def train_step(step):
        runtime.seed_step(args.seed, dist.rank, step)
        generator = runtime.step_generator(args.seed, dist.rank, step, "cpu")
        factor = runtime.lr_factor(args.lr_decay, step, args.steps)
        runtime.scale_lr(optimizers.values(), factor)
        device = dist.device
        scalars = {"lr_factor": factor}
        for _ in range(args.shape_steps_per_step):
            chosen = take(generator, args.shape_batch_size)
            z0 = sample_gaussian(encodings["z_mean"][chosen], encodings["z_log_sigma"][chosen], generator).to(device)
            loss_shape = update_shape_prior(losses["shape"], optimizers["shape"], model.shape_prior, z0,
                                            encodings["label"][chosen] if categories else None, args, generator,
                                            step, scalars)
        chosen = take(generator, args.batch_size)
        z0 = encodings["z"][chosen].to(device)
        h0 = model.vae.sample_latent_points(encodings["h_mean"][chosen], encodings["h_log_sigma"][chosen],
                                            generator).to(device)
        t = None
        if args.low_t_share > 0 and step >= args.low_t_from_step:
            t = training_steps(args.batch_size, schedule.num_steps, args.low_t_share, args.low_t_max, generator,
                               args.low_t_min).to(device)
        loss_points = losses["points"](h0, z0, generator, t)
        runtime.check_finite(loss_points, step)
        runtime.optimize(optimizers["points"], loss_points, model.point_prior.parameters(), args.grad_clip, scalars,
                         "grad_norm_points")
        ema.update(priors, step)
        scalars.update(loss=loss_shape.item() + loss_points.item(), loss_shape_latent=loss_shape.item(),
                       loss_latent_points=loss_points.item())
        for name, prior in (("shape", model.shape_prior), ("points", model.point_prior)):
            if hasattr(prior, "mixing_logit"):
                scalars[f"mixing_weight_{name}"] = torch.sigmoid(prior.mixing_logit).mean().item()
        return scalars

    def save(step):
        trained = {name: value.clone() for name, value in priors.state_dict().items()}
        ema.copy_to(priors)  # the saved model carries the averaged prior weights
        runtime.atomic_save_model(args.out, model, dataset=args.data, step=step,
                                  extra={"stage": "prior", "trained_parts": ["vae", "shape_prior", "point_prior"],
                                         "vae_step": vae_metadata.get("step"),
                                         **runtime.inherited_metadata(vae_metadata)})
        render_samples(model, args.out, step, args.seed)
        priors.load_state_dict(trained)

    priors.train()
    parts = {"priors": priors, "optimizer_shape": optimizers["shape"], "optimizer_points": optimizers["points"],
             "ema": ema}
    return runtime.run_training(args, dist, parts, priors, train_step, save)


def _groups(prior, lr, logit_lr_scale):
    """Adam parameter groups: the network at `lr`, its mixing logits (if any) scaled apart."""
    logits = [p for name, p in prior.named_parameters() if name == "mixing_logit"]
    rest = [p for name, p in prior.named_parameters() if name != "mixing_logit"]
    return [{"params": rest, "lr": lr}] + ([{"params": logits, "lr": lr * logit_lr_scale}] if logits else [])


@torch.no_grad()
def render_samples(model, run_dir, step, seed, count=8):
    """Fresh samples (DDIM, 25 steps) of the model with its current prior weights: one per
    category for a class-conditioned model, else `count`."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    if model.categories:
        points = torch.cat([pipelines.sample(model, 1, generator, category=name) for name in model.categories])
    else:
        points = pipelines.sample(model, count, generator)
    model.train()
    model.vae.eval()
    return runtime.save_render(run_dir, "samples", step, points, columns=4)


if __name__ == "__main__":
    raise SystemExit(main())
