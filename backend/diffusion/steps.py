"""Which steps a sampler visits (step plans) and the one-step updates between them."""
import math
from typing import List, Optional, Sequence

import torch

from backend.diffusion.schedule import (
    DiffusionSchedule, _check_batch, _check_eta, _check_same_shape, _check_step, _randn_like,
)

SPACINGS = ("uniform", "quadratic")  # how sampling_steps spreads a DDIM pass's steps

# ----------------------------------------------------------------------------- step plans


def sampling_steps(
    schedule: DiffusionSchedule, count: int, spacing: str = "uniform", start: Optional[int] = None
) -> List[int]:
    """The descending steps a DDIM sampler visits, from ``start`` down to 1 (then to data).

    "uniform": step_i = floor(i·(start - 1)/(count - 1)) + 1; for start = T this is the official
    LION spacing (its 0-based floor(i·(T - 1)/(S - 1)), plus one). "quadratic": step_i =
    floor((i/(count - 1))²·(start - 1)) + 1, raised where needed to keep the steps distinct,
    which puts more steps near the data. Unlike the original DDIM code's "quad" (which stops
    at 0.8·T) it spans the whole range, so sampling starts from the step whose marginal is
    the N(0, I) noise it is given.

    Args:
        count: the number of network evaluations, 1..start.
        spacing: "uniform" or "quadratic".
        start: the noisiest step, 1..T (default T).

    Returns:
        list of ``count`` distinct ints, descending, first ``start``, last 1 (or just [start]).
    """
    start = schedule.num_steps if start is None else start
    _check_step("start", start, schedule, lowest=1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= start:
        raise ValueError(f"count must be an int in 1..{start} (the start step), got {count!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be 'uniform' or 'quadratic', got {spacing!r}")
    if count == 1:
        return [start]
    if spacing == "uniform":
        offsets = [(i * (start - 1)) // (count - 1) for i in range(count)]
    else:
        # max(., i) keeps them distinct: the floored parabola climbs by less than one step
        # only below the index where it overtakes i, and by at least one after it.
        offsets = [max(math.floor((i / (count - 1)) ** 2 * (start - 1)), i) for i in range(count)]
    return [offset + 1 for offset in reversed(offsets)]


def repaint_path(start: int, jump_length: int, resamples: int) -> List[int]:
    """The steps RePaint visits: down one step at a time from ``start`` to 0, but on reaching a
    multiple of ``jump_length`` (with room above it) it diffuses back up ``jump_length`` steps
    and denoises that stretch again, ``resamples - 1`` extra times.

    Args:
        start: the first step, >= 0.
        jump_length: steps per re-noising jump, >= 1.
        resamples: how often each stretch is denoised in all, >= 1 (1 = no resampling).

    Returns:
        list of ints beginning at ``start`` and ending at 0; consecutive entries either go
        down by one (a denoising step) or up by ``jump_length`` (a re-noising jump).
    """
    for name, value, lowest in (("start", start, 0), ("jump_length", jump_length, 1),
                                ("resamples", resamples, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise ValueError(f"{name} must be an int >= {lowest}, got {value!r}")
    jumps_left = {t: resamples - 1 for t in range(0, start - jump_length + 1, jump_length)}
    path = [start]
    t = start
    while t > 0:
        t -= 1
        path.append(t)
        if jumps_left.get(t, 0) > 0:
            jumps_left[t] -= 1
            t += jump_length
            path.append(t)
    return path


def _check_descending_steps(steps: Sequence[int], schedule: DiffusionSchedule) -> List[int]:
    steps = list(steps)
    if not steps:
        raise ValueError("steps must hold at least one step")
    for t in steps:
        _check_step("steps entry", t, schedule, lowest=1)
    if any(later >= earlier for earlier, later in zip(steps, steps[1:])):
        raise ValueError(f"steps must be strictly descending, got {steps}")
    return steps


# ----------------------------------------------------------------------------- one step


def ddpm_step(
    schedule: DiffusionSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int,
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One ancestral DDPM step t -> t-1 with variance β_t (as in LION):
    x_{t-1} = (x_t - β_t/sqrt(1 - a_t)·eps)/sqrt(α_t) + sqrt(β_t)·noise, without noise at t = 1.

    Args:
        x_t: float tensor [B, ...] at step t.
        eps: float tensor shaped like x_t, the predicted noise.
        t: int step in 1..T.
        noise: standard normal tensor shaped like x_t; required for t > 1, unused at t = 1.

    Returns:
        x_{t-1}, shaped like x_t.
    """
    _check_batch("x_t", x_t)
    _check_step("t", t, schedule, lowest=1)
    _check_same_shape("eps", eps, x_t, "x_t")
    beta = float(schedule.betas[t])
    alpha_bar = float(schedule.alphas_cumprod[t])
    mean = (x_t - (beta / math.sqrt(1.0 - alpha_bar)) * eps) / math.sqrt(1.0 - beta)
    if t == 1:
        return mean
    _check_same_shape("noise", noise, x_t, "x_t")
    return mean + math.sqrt(beta) * noise


def ddim_step(
    schedule: DiffusionSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_next: int,
    eta: float = 0.0, noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One DDIM step from step t to step t_next:
    x_next = sqrt(a_next)·x0_pred + sqrt(1 - a_next - σ²)·eps + σ·noise, where x0_pred is
    predict_x0(x_t, eps) and σ = eta·sqrt((1 - a_next)/(1 - a_t)·(1 - a_t/a_next)).

    With eta = 0 the step is deterministic and may also go up (t_next > t): that is DDIM
    inversion, and stepping back down with the same eps returns x_t exactly.

    Args:
        x_t: float tensor [B, ...] at step t.
        eps: float tensor shaped like x_t, the predicted noise.
        t: int step in 0..T.
        t_next: int step in 0..T; below t unless eta = 0.
        eta: 0 (deterministic DDIM) .. 1 (DDPM-like posterior variance).
        noise: standard normal tensor shaped like x_t; required when σ > 0.

    Returns:
        x at step t_next, shaped like x_t.
    """
    _check_batch("x_t", x_t)
    _check_step("t", t, schedule, lowest=0)
    _check_step("t_next", t_next, schedule, lowest=0)
    _check_same_shape("eps", eps, x_t, "x_t")
    _check_eta(eta)
    if eta > 0.0 and t_next >= t:
        raise ValueError(f"a stochastic step (eta > 0) must go down: t={t}, t_next={t_next}")
    alpha_bar = float(schedule.alphas_cumprod[t])
    alpha_bar_next = float(schedule.alphas_cumprod[t_next])
    sigma = 0.0
    if eta > 0.0:
        sigma = eta * math.sqrt((1.0 - alpha_bar_next) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_next))
    x0 = (x_t - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    # σ² <= 1 - a_next exactly; max() only absorbs rounding at eta = 1
    x_next = math.sqrt(alpha_bar_next) * x0 + math.sqrt(max(1.0 - alpha_bar_next - sigma**2, 0.0)) * eps
    if sigma == 0.0:
        return x_next
    _check_same_shape("noise", noise, x_t, "x_t")
    return x_next + sigma * noise


def _diffuse_further(schedule: DiffusionSchedule, x_t: torch.Tensor, t: int, t_later: int,
                     generator: Optional[torch.Generator]) -> torch.Tensor:
    """Sample q(x_{t_later} | x_t): scale by sqrt(a_later/a_t) and add the missing noise."""
    ratio = float(schedule.alphas_cumprod[t_later] / schedule.alphas_cumprod[t])
    return math.sqrt(ratio) * x_t + math.sqrt(1.0 - ratio) * _randn_like(x_t, generator)

