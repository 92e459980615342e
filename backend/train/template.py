"""Train a point template (config.PointTemplateConfig): z0 -> latent points in one pass.

    python -m backend.train template --model runs/prior/model.safetensors --data procedural --out runs/template

On a CPU-trained model the h0 prior misplaces parts when it samples latent points from noise;
an MLP from z0 to all N latent points, trained on the frozen VAE's encodings, places them
(models/default.md). The training set is encoded once, as the prior stage does
(--encodings-per-shape posterior draws of z0 per shape, RUN/encodings.pt). Each step maps a
batch of z0 samples to latent points and matches them to the posterior means (--target mean;
or samples) of the same shapes' h0: every point is paired with the nearest point of the other
set, both ways, by all channels, and the mean squared error over all channels is the loss.
--match-points draws that many points of each set per step (the pairing costs N² per shape;
all N: --match-points 0). --decoded-weight adds the Chamfer distance between what the frozen
decoder makes of the template's points and the shape's points (a second phase, with
--continue-template, in the default model's recipe).
--shape-latent mean maps posterior means of z0 instead of samples (within a category a sample
is mostly posterior noise on the default model) and gives the template a z0 prior of its own,
started from the model's and trained here on the means (--shape-steps-per-step updates a step),
which Generate then draws from. --point-hidden adds a per-point network after the MLP.
The VAE and the priors are untouched; the saved model is the input model plus
`point_template.*`, recorded in its config, and `pipelines.sample` uses it from then on.
An exponential moving average of the template (--ema, with warm-up) is what is saved.
"""
import argparse
import copy
import dataclasses

import torch

from backend.config import TEMPLATE_SHAPE_LATENTS, PointTemplateConfig
from backend.metrics import chamfer_distance
from backend.models.template import LatentPointTemplate
from backend.train import prior as prior_stage
from backend.train import runtime
from backend.train.voxel_encoder import matched_latent_point_loss

DEFAULT_LR = 1e-3
DEFAULT_EMA = 0.995
DEFAULT_HIDDEN = "512,1024,1024"
DEFAULT_MATCH_POINTS = 1024


def widths(text):
    """argparse type: comma-separated hidden widths, each >= 1."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated widths >= 1, got {text!r}")
    return values


def random_subset(points, count, generator):
    """`count` of the N points of every set in `points` float [B, N, C] (all when count is 0 or
    >= N), a fresh random choice per set."""
    batch, total, channels = points.shape
    if not count or count >= total:
        return points
    order = torch.rand(batch, total, generator=generator).argsort(dim=1)[:, :count].to(points.device)
    return torch.gather(points, 1, order.unsqueeze(-1).expand(-1, -1, channels))


def template_loss(template, shape_latent, latent_points, match_points, generator):
    """(loss, scalars): the matched error between template(z0) and the encoded latent points."""
    made = random_subset(template(shape_latent), match_points, generator)
    target = random_subset(latent_points, match_points, generator)
    loss = matched_latent_point_loss(made, target, match_all_channels=True)
    return loss, {"loss": loss.item()}


def decoded_loss(template, decoder, shape_latent, points):
    """(loss, scalars): Chamfer distance between the decoding of template(z0) by the frozen
    decoder and the shapes' points float [B, N, 3] (what an artist sees, not the latents)."""
    decoded = decoder(shape_latent, template(shape_latent))
    loss = chamfer_distance(decoded, points).mean()
    return loss, {"loss_decoded": loss.item()}


def parse_arguments(argv):
    parser = runtime.stage_parser("template", __doc__, grad_clip=1.0)
    parser.add_argument("--model", required=True, help="model.safetensors of a trained VAE or prior run")
    parser.add_argument("--hidden", type=widths, default=widths(DEFAULT_HIDDEN),
                        help=f"hidden widths of the template's MLP (default {DEFAULT_HIDDEN})")
    parser.add_argument("--point-hidden", type=widths,
                        help="hidden widths of a per-point network after the MLP (default: none, the MLP emits "
                             "all points)")
    parser.add_argument("--point-code", type=int, default=32, help="with --point-hidden: channels of each point's code")
    parser.add_argument("--continue-template", action="store_true",
                        help="train the --model's own point template further (--hidden is then ignored)")
    parser.add_argument("--ema", type=float, default=DEFAULT_EMA, help="EMA decay of the template weights")
    parser.add_argument("--encodings-per-shape", type=int, default=4, help="posterior draws per training shape")
    parser.add_argument("--match-points", type=int, default=DEFAULT_MATCH_POINTS,
                        help="points of each set paired per step (0: all)")
    parser.add_argument("--target", choices=("mean", "sample"), default="mean",
                        help="what the template's points are matched to: the posterior means of the latent points, "
                             "or posterior samples")
    parser.add_argument("--shape-latent", choices=TEMPLATE_SHAPE_LATENTS,
                        help="the z0 the template maps: posterior samples (what the model's z0 prior draws), or "
                             "posterior means, drawn by a z0 prior of the template's own, started from the model's "
                             "and trained here on the means (default: the --model template's with "
                             "--continue-template, else sample)")
    parser.add_argument("--shape-steps-per-step", type=int, default=2,
                        help="with --shape-latent mean: updates of the template's z0 prior per step")
    parser.add_argument("--shape-batch-size", type=int, default=64, help="z0 means per z0 prior update")
    parser.add_argument("--shape-lr", type=float, default=5e-4, help="learning rate of the template's z0 prior")
    parser.add_argument("--label-dropout", type=float, default=0.2,
                        help="share of unlabelled z0 prior examples (classifier-free guidance)")
    parser.add_argument("--decoded-weight", type=float, default=0.0,
                        help="weight of the decoded Chamfer loss (the frozen decoder's output against the "
                             "shape's points) added to the latent matching loss (0: off)")
    parser.add_argument("--lr-decay", choices=("constant", "cosine"), default="cosine",
                        help="learning rate: constant, or falling to 0 at --steps along half a cosine")
    args = parser.parse_args(argv)
    if args.match_points < 0:
        parser.error("--match-points must be >= 0")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    dist = runtime.start_run(args)

    model, source_metadata, dataset = runtime.load_trained_model(args.model, args, dist)
    model.requires_grad_(False).eval()
    if args.continue_template:
        if model.point_template is None:
            raise SystemExit(f"--continue-template: {args.model} has no point template")
    else:
        config = PointTemplateConfig(hidden_channels=list(args.hidden), point_hidden_channels=list(args.point_hidden or []),
                                     point_code_channels=args.point_code)
        model.config = dataclasses.replace(model.config, point_template=config)
        torch.manual_seed(args.seed)  # the same initial weights on every rank and every run
        model.point_template = LatentPointTemplate(config, model.config.vae.shape_latent_dim,
                                                   model.config.vae.num_points,
                                                   model.config.latent_point_dim).to(dist.device)
    shape_latent_kind = args.shape_latent or model.config.point_template.shape_latent
    model.config = dataclasses.replace(model.config, point_template=dataclasses.replace(
        model.config.point_template, shape_latent=shape_latent_kind))
    template = model.point_template
    # A template of means trains its own z0 prior beside its network; they are kept apart while
    # training (each with its own optimizer and, across processes, its own DDP wrapper) and
    # joined again for saving.
    own_prior = getattr(template, "shape_prior", None)
    if own_prior is not None:
        del template.shape_prior
    if shape_latent_kind == "sample":
        own_prior = None
    elif own_prior is None:
        own_prior = copy.deepcopy(model.shape_prior)  # a start that knows the categories
    trained = torch.nn.ModuleDict({"template": template, **({"shape_prior": own_prior} if own_prior else {})})
    trained.requires_grad_(True)
    encodings = prior_stage.load_or_encode(args, dist, model.vae, dataset, model.categories)
    wrapped = dist.wrap(template)
    optimizer = torch.optim.Adam(template.parameters(), lr=args.lr or DEFAULT_LR)
    optimizers = {"optimizer": optimizer}
    if own_prior is not None:
        shape_loss = dist.wrap(prior_stage.PriorLoss(own_prior, model.schedule, model.config.diffusion.prediction))
        optimizers["optimizer_shape"] = torch.optim.Adam(own_prior.parameters(), lr=args.shape_lr)
    runtime.keep_base_lr(optimizers.values())
    ema = runtime.EMA(trained, args.ema)
    rows = encodings["z"].shape[0]

    def train_step(step):
        runtime.seed_step(args.seed, dist.rank, step)
        generator = runtime.step_generator(args.seed, dist.rank, step, "cpu")
        factor = runtime.lr_factor(args.lr_decay, step, args.steps)
        runtime.scale_lr(optimizers.values(), factor)
        scalars = {}
        for _ in range(args.shape_steps_per_step if own_prior is not None else 0):
            shape_rows = torch.randint(0, rows, (args.shape_batch_size,), generator=generator)
            loss_shape = prior_stage.update_shape_prior(
                shape_loss, optimizers["optimizer_shape"], own_prior, encodings["z_mean"][shape_rows].to(dist.device),
                encodings["label"][shape_rows] if model.categories else None, args, generator, step, scalars)
            scalars["loss_shape_latent"] = loss_shape.item()
        chosen = torch.randint(0, rows, (args.batch_size,), generator=generator)
        shape_latent = encodings["z" if shape_latent_kind == "sample" else "z_mean"][chosen].to(dist.device)
        if args.target == "mean":
            latent_points = encodings["h_mean"][chosen].to(dist.device)
        else:
            latent_points = model.vae.sample_latent_points(encodings["h_mean"][chosen], encodings["h_log_sigma"][chosen],
                                                           generator).to(dist.device)
        loss, loss_scalars = template_loss(wrapped, shape_latent, latent_points, args.match_points, generator)
        scalars.update(loss_scalars)
        if args.decoded_weight > 0:
            points = torch.stack([dataset[int(row) % len(dataset)] for row in chosen]).to(dist.device)
            extra, extra_scalars = decoded_loss(wrapped, model.vae.decode, shape_latent, points)
            loss = loss + args.decoded_weight * extra
            scalars.update(extra_scalars, loss=loss.item())
        runtime.check_finite(loss, step)
        scalars["lr_factor"] = factor
        runtime.optimize(optimizer, loss, template.parameters(), args.grad_clip, scalars)
        ema.update(trained, step)
        return scalars

    def save(step):
        weights = {name: value.clone() for name, value in trained.state_dict().items()}
        ema.copy_to(trained)  # the saved model carries the averaged weights
        if own_prior is not None:
            template.shape_prior = own_prior
        runtime.atomic_save_model(args.out, model, dataset=args.data, step=step,
                                  extra={"stage": "template",
                                         "trained_parts": runtime.trained_parts(source_metadata, "point_template"),
                                         "source_model_step": source_metadata.get("step"),
                                         **runtime.inherited_metadata(source_metadata)})
        prior_stage.render_samples(model, args.out, step, args.seed)
        if own_prior is not None:
            del template.shape_prior
        trained.load_state_dict(weights)

    trained.train()
    parts = {"point_template": trained, **optimizers, "ema": ema}
    return runtime.run_training(args, dist, parts, trained, train_step, save)


if __name__ == "__main__":
    raise SystemExit(main())
