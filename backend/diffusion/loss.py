"""The denoising training loss of every parameterization."""
from typing import Optional

import torch

from backend.diffusion.parameterization import _check_prediction, eps_from_output, velocity
from backend.diffusion.schedule import (
    DiffusionSchedule, EpsModel, _check_batch, _check_same_shape, _check_step_tensor, _randn_like, q_sample,
)


def training_loss(
    schedule: DiffusionSchedule,
    network: EpsModel,
    x0: torch.Tensor,
    *,
    prediction: str = "eps",
    mixing_logit: Optional[torch.Tensor] = None,
    t: Optional[torch.Tensor] = None,
    noise: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """The denoising loss of a network that predicts ``prediction`` (see PREDICTIONS).

    "eps" and "mixed": mean squared error between the (mixed) noise prediction and the noise,
    as LION trains. "v": mean squared error between the output and
    v = sqrt(a_t)·noise - sqrt(1 - a_t)·x0, which weighs every step by 1/a_t against the
    noise error and so keeps the high-noise steps, where DDIM amplifies noise errors by
    1/sqrt(a_t), as accurate as the rest.

    Args:
        network: callable (x_t [B, ...], index int64 [B] = step - 1) -> raw output [B, ...].
        x0: float tensor [B, ...], clean latents.
        prediction: "eps", "v" or "mixed".
        mixing_logit: the network's logits, required for "mixed" (see mixed_eps).
        t: int64 tensor [B] of steps in 1..T; drawn uniformly from 1..T with ``generator``
            when None.
        noise: float tensor shaped like x0; drawn from N(0, I) with ``generator`` when None.
        reduction: "mean" returns a 0-dim tensor, the mean over every element; "none"
            returns a [B] tensor, each sample's mean over its elements.

    Returns:
        loss tensor in x0's dtype, differentiable w.r.t. the network's parameters.
    """
    _check_batch("x0", x0)
    _check_prediction(prediction, mixing_logit)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if t is None:
        device = generator.device if generator is not None else x0.device
        t = torch.randint(1, schedule.num_steps + 1, (x0.shape[0],), generator=generator, device=device)
        t = t.to(x0.device)
    _check_step_tensor("t", t, x0, schedule, lowest=1)
    if noise is None:
        noise = _randn_like(x0, generator)
    _check_same_shape("noise", noise, x0, "x0")
    x_t = q_sample(schedule, x0, t, noise)
    output = network(x_t, t - 1)
    _check_same_shape("network output", output, x0, "x0")
    if prediction == "v":
        error = output - velocity(schedule, x0, t, noise)
    else:
        error = eps_from_output(schedule, prediction, output, x_t, t, mixing_logit) - noise
    per_sample = error.square().reshape(x0.shape[0], -1).mean(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample
