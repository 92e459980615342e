"""What a prior's network predicts (ε, v or LION's mixed score) and its conversion to the noise
prediction ε that every sampler takes."""
import math
from typing import Optional

import torch

from backend.config import PREDICTIONS
from backend.diffusion.schedule import (
    DiffusionSchedule, EpsModel, Step, _at, _check_batch, _check_same_shape, _check_step_tensor,
)


def _check_prediction(prediction: str, mixing_logit) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    if prediction == "mixed" and not isinstance(mixing_logit, torch.Tensor):
        raise ValueError("the mixed score needs the network's mixing_logit tensor")


def velocity(schedule: DiffusionSchedule, x0: torch.Tensor, t: Step, noise: torch.Tensor) -> torch.Tensor:
    """v = sqrt(a_t)·noise - sqrt(1 - a_t)·x0, the v-prediction target (Salimans & Ho, 2022)."""
    alpha_bar = _at(schedule.alphas_cumprod, t, x0)
    if isinstance(alpha_bar, float):
        return math.sqrt(alpha_bar) * noise - math.sqrt(1.0 - alpha_bar) * x0
    return alpha_bar.sqrt() * noise - (1.0 - alpha_bar).sqrt() * x0


def eps_from_output(
    schedule: DiffusionSchedule,
    prediction: str,
    output: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    mixing_logit: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The noise prediction implied by a network's raw output, for every sampler to use.

    "eps": the output itself. "v": eps = sqrt(a_t)·v + sqrt(1 - a_t)·x_t, whose error is
    sqrt(a_t) times the v error, so it vanishes where DDIM's 1/sqrt(a_t) grows.
    "mixed": mixed_eps with the network's logits.

    Args:
        output: float tensor [B, ...], the network's output at x_t.
        x_t: float tensor shaped like output.
        t: int64 tensor [B] of steps in 1..T.
        mixing_logit: required for "mixed".
    """
    _check_prediction(prediction, mixing_logit)
    if prediction == "eps":
        return output
    if prediction == "mixed":
        return mixed_eps(schedule, output, x_t, t, mixing_logit)
    alpha_bar = _at(schedule.alphas_cumprod, t, x_t)
    return alpha_bar.sqrt() * output + (1.0 - alpha_bar).sqrt() * x_t


def mixed_eps(
    schedule: DiffusionSchedule,
    network_eps: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    mixing_logit: torch.Tensor,
) -> torch.Tensor:
    """LSGM/LION mixed score parameterization of the noise prediction.

    eps = (1 - m)·sqrt(1 - a_t)·x_t + m·network_eps, with m = sigmoid(mixing_logit). The first
    term is the exact noise prediction for N(0, I) data, so the network only models how the
    latents differ from a standard normal.

    Args:
        network_eps: float tensor [B, ...], the network's raw output.
        x_t: float tensor shaped like network_eps, the network's input at step t.
        t: int64 tensor [B] of steps in 1..T.
        mixing_logit: float tensor broadcastable to x_t's per-sample shape (one logit per
            latent dimension, e.g. [128] or [N, 4]).

    Returns:
        tensor shaped like x_t.
    """
    _check_batch("x_t", x_t)
    _check_same_shape("network_eps", network_eps, x_t, "x_t")
    _check_step_tensor("t", t, x_t, schedule, lowest=1)
    try:
        torch.broadcast_shapes(mixing_logit.shape, x_t.shape[1:])
    except RuntimeError:
        raise ValueError(
            f"mixing_logit of shape {list(mixing_logit.shape)} does not broadcast to the "
            f"per-sample shape {list(x_t.shape[1:])}"
        ) from None
    weight = torch.sigmoid(mixing_logit).to(x_t.dtype)
    gaussian_eps = (1.0 - _at(schedule.alphas_cumprod, t, x_t)).sqrt() * x_t
    return (1.0 - weight) * gaussian_eps + weight * network_eps


def as_eps_model(schedule: DiffusionSchedule, network: EpsModel, prediction: str,
                 mixing_logit: Optional[torch.Tensor] = None) -> EpsModel:
    """The ``eps_model(x_t, index)`` every sampler here takes, from a network that predicts
    ``prediction``: its output converted by eps_from_output."""
    _check_prediction(prediction, mixing_logit)
    if prediction == "eps":
        return network
    return lambda x_t, index: eps_from_output(schedule, prediction, network(x_t, index), x_t, index + 1, mixing_logit)
