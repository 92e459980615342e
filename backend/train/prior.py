"""Stage 2: train LION's two latent DDMs on the encodings of a frozen, trained VAE.

    python -m backend.train prior --vae runs/vae/model.safetensors --data procedural --out runs/prior

Each step encodes a batch with the frozen VAE (posterior samples, as LION trains its priors),
then takes the epsilon-prediction MSE of the z0 prior on z0 and of the h0 prior on h0 given
the clean z0. Both priors share one Adam optimizer (lr 2e-4); an exponential moving average
of their weights (0.9999) is what the saved model carries. The data normalization is the
VAE's, read from its checkpoint.
"""
import argparse

import torch

from backend import diffusion, pipelines
from backend.train import runtime

DEFAULT_LR = 2e-4
DEFAULT_EMA = 0.9999


class Priors(torch.nn.Module):
    """Both priors as one module, so one optimizer, one EMA and one DDP wrapper serve them."""

    def __init__(self, model):
        super().__init__()
        self.shape_prior, self.point_prior = model.shape_prior, model.point_prior

    def forward(self, shape_latent, latent_points, schedule, generator):
        loss_shape = diffusion.training_loss(schedule, self.shape_prior, shape_latent, generator=generator)
        loss_points = diffusion.training_loss(
            schedule, lambda x, t: self.point_prior(x, t, shape_latent), latent_points, generator=generator)
        return loss_shape, loss_points


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m backend.train prior", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", required=True, help="model.safetensors of a trained VAE run")
    runtime.common_arguments(parser)
    runtime.data_arguments(parser)
    parser.add_argument("--ema", type=float, default=DEFAULT_EMA, help="EMA decay of the prior weights")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    dist = runtime.start_run(args)

    model, vae_metadata, dataset = runtime.load_trained_model(args.vae, args, dist)
    model.vae.requires_grad_(False).eval()
    priors = Priors(model)
    trainer = dist.wrap(priors)
    optimizer = torch.optim.Adam(priors.parameters(), lr=args.lr or DEFAULT_LR)
    ema = runtime.EMA(priors, args.ema)
    schedule = pipelines.schedule_of(model)
    batches = runtime.BatchOrder(dataset, args.batch_size, args.seed, dist)

    parts = {"priors": priors, "optimizer": optimizer, "ema": ema}
    step = runtime.restore_state(args, dist, parts)
    run_log = runtime.RunLog(args.out, args.steps, step, dist.is_main)

    def train_step(step):
        points = batches.batch(step).to(dist.device)
        runtime.seed_step(args.seed, dist.rank, step)
        generator = runtime.step_generator(args.seed, dist.rank, step, dist.device)
        with torch.no_grad():
            encoding = model.vae.encode(points, sample=True, generator=generator)
        loss_shape, loss_points = trainer(encoding.shape_latent, encoding.latent_points, schedule, generator)
        loss = loss_shape + loss_points
        if not runtime.is_finite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; the last checkpoint is kept")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        scalars = {"loss": loss.item(), "loss_shape_latent": loss_shape.item(), "loss_latent_points": loss_points.item()}
        if args.grad_clip > 0:
            scalars["grad_norm"] = torch.nn.utils.clip_grad_norm_(priors.parameters(), args.grad_clip).item()
        optimizer.step()
        ema.update(priors)
        return scalars

    def checkpoint(step):
        runtime.check_replicas(priors, dist, run_log, step)
        if dist.is_main:
            runtime.save_state(args.out, step, parts)
            trained = {name: value.clone() for name, value in priors.state_dict().items()}
            ema.copy_to(priors)  # the saved model carries the averaged prior weights
            runtime.atomic_save_model(args.out, model, dataset=args.data, step=step,
                                      extra={"stage": "prior", "trained_parts": ["vae", "shape_prior", "point_prior"],
                                             "vae_step": vae_metadata.get("step"),
                                             **runtime.inherited_metadata(vae_metadata)})
            render_samples(model, args.out, step, args.seed)
            priors.load_state_dict(trained)
        dist.barrier()

    priors.train()
    return runtime.run_steps(args, dist, run_log, step, train_step, checkpoint)


@torch.no_grad()
def render_samples(model, run_dir, step, seed, count=8):
    """Fresh samples (DDIM, 25 steps) of the model with its current prior weights."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    points = pipelines.sample(model, count, generator)
    model.train()
    model.vae.eval()
    return runtime.save_render(run_dir, "samples", step, points, columns=4)


if __name__ == "__main__":
    raise SystemExit(main())
