"""Denoising diffusion math shared by LION's two latent DDMs (the z0 prior and the h0 prior).

This module knows nothing of networks or pipelines. It holds the noise schedule, the forward
process, the training loss of each parameterization (ε, v, mixed score) and the conversion of
its output to ε (``as_eps_model``), the one-step updates, and short sampler loops over an
``eps_model(x_t, index) -> eps`` callable. Every function works on any tensor shape with
the batch first ([B, 128] shape latents, [B, N, 4] latent points, ...), on any device.

Step convention: step 0 is clean data; steps 1..T are increasingly noisy;
    x_t = sqrt(a_t)·x_0 + sqrt(1 - a_t)·ε with a_t = prod_{s<=t} (1 - β_s) and a_0 = 1.
    Every ``t``, ``tau`` and ``steps`` argument here is such a step number, so tau counts the
    forward steps a variation diffuses for.

The network is called as ``eps_model(x_t, index)`` with ``index`` an int64 tensor [B] holding
the 0-based index step - 1 (0..T-1), the convention of backend.models' priors, which embed
index + 1. The official LION code feeds its time embeddings that same 1-based number (its
0-based loop index plus one, at embedding scale 1), so converted official weights see the
time values they were trained with.

Samplers take a ``torch.Generator`` for reproducible noise (a CPU generator gives the same
samples on every device) and a ``callback(step, total)`` called after every network step;
an exception raised by the callback stops sampling at once (the server's cancel). Samplers run
under ``torch.no_grad``.
"""
import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

from backend.config import PREDICTIONS

# eps_model(x_t [B, ...], index int64 [B] = step - 1) -> predicted noise shaped like x_t
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ProgressCallback = Callable[[int, int], None]
Step = Union[int, torch.Tensor]


class DiffusionSchedule:
    """The linear β schedule and the quantities derived from it, in float64.

    Tables are indexed by step (0..T): ``betas[t]`` = β_t, ``alphas[t]`` = 1 - β_t,
    ``alphas_cumprod[t]`` = a_t, with step 0 standing for clean data (β_0 = 0, a_0 = 1).
    Each table is a float64 CPU tensor of shape [T + 1]; functions cast on use.

    Args:
        num_steps: T, the number of diffusion steps (LION: 1000).
        beta_start: β_1 (LION: 1e-4).
        beta_end: β_T (LION: 0.02).
    """

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(
                f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
                f"got beta_start={beta_start!r}, beta_end={beta_end!r}"
            )
        self.num_steps = num_steps
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        # CPU tables even where a model is built under another default device (e.g. "meta").
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64, device="cpu")
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64, device="cpu"), betas])
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    def __repr__(self):
        return (
            f"DiffusionSchedule(num_steps={self.num_steps}, beta_start={self.beta_start}, "
            f"beta_end={self.beta_end})"
        )

    def alpha_bar(self, t: int) -> float:
        """a_t for one step t in 0..T, as a Python float."""
        _check_step("t", t, self, lowest=0)
        return float(self.alphas_cumprod[t])


# ----------------------------------------------------------------------------- validation


def _check_step(name: str, t, schedule: DiffusionSchedule, lowest: int) -> None:
    if not isinstance(t, int) or isinstance(t, bool) or not lowest <= t <= schedule.num_steps:
        raise ValueError(f"{name} must be an int step in {lowest}..{schedule.num_steps}, got {t!r}")


def _check_step_tensor(name: str, t: torch.Tensor, x: torch.Tensor, schedule, lowest: int) -> None:
    if t.dtype != torch.int64 or t.shape != (x.shape[0],):
        raise ValueError(
            f"{name} must be an int64 tensor of shape [{x.shape[0]}] (one step per sample), "
            f"got dtype {t.dtype} and shape {list(t.shape)}"
        )
    if t.numel() and (int(t.min()) < lowest or int(t.max()) > schedule.num_steps):
        raise ValueError(f"{name} values must lie in {lowest}..{schedule.num_steps}")


def _check_batch(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor with the batch first")


def _check_step_or_steps(name: str, t: Step, x: torch.Tensor, schedule, lowest: int) -> None:
    if isinstance(t, torch.Tensor):
        _check_step_tensor(name, t, x, schedule, lowest)
    else:
        _check_step(name, t, schedule, lowest)


def _check_same_shape(name: str, value: torch.Tensor, x: torch.Tensor, x_name: str) -> None:
    if not isinstance(value, torch.Tensor) or value.shape != x.shape:
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must have the shape of {x_name} {list(x.shape)}, got {shape}")


# ----------------------------------------------------------------------------- helpers


def _at(table: torch.Tensor, t: Step, x: torch.Tensor):
    """table[t]: a Python float for an int step, else a [B, 1, ...] tensor shaped to broadcast
    against x, in x's dtype and on x's device (gathered in float64 on the CPU first, because
    some devices have no float64)."""
    if isinstance(t, torch.Tensor):
        values = table[t.cpu()].to(dtype=x.dtype).to(x.device)
        return values.reshape((x.shape[0],) + (1,) * (x.dim() - 1))
    return float(table[t])


def _randn_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like x. Drawn on the generator's device and moved, so one
    CPU generator and seed give the same numbers whatever device x lives on."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _predict_eps(eps_model: EpsModel, x: torch.Tensor, t: int) -> torch.Tensor:
    index = torch.full((x.shape[0],), t - 1, dtype=torch.int64, device=x.device)
    eps = eps_model(x, index)
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        got = list(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps_model returned {got}; it must return the shape of x_t {list(x.shape)}")
    return eps


def _report(callback: Optional[ProgressCallback], step: int, total: int) -> None:
    if callback is not None:
        callback(step, total)


# ----------------------------------------------------------------------------- forward process


def q_sample(
    schedule: DiffusionSchedule,
    x0: torch.Tensor,
    t: Step,
    noise: Optional[torch.Tensor] = None,
    *,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Diffuse clean data to step t: x_t = sqrt(a_t)·x0 + sqrt(1 - a_t)·noise.

    Args:
        x0: float tensor [B, ...], clean data.
        t: an int step in 0..T shared by the batch, or an int64 tensor [B] of steps in 0..T.
            Step 0 returns x0 unchanged.
        noise: float tensor shaped like x0; drawn from N(0, I) with ``generator`` when None.

    Returns:
        x_t: tensor shaped like x0, in x0's dtype.
    """
    _check_batch("x0", x0)
    _check_step_or_steps("t", t, x0, schedule, lowest=0)
    if noise is None:
        noise = _randn_like(x0, generator)
    _check_same_shape("noise", noise, x0, "x0")
    alpha_bar = _at(schedule.alphas_cumprod, t, x0)
    if isinstance(alpha_bar, float):
        return math.sqrt(alpha_bar) * x0 + math.sqrt(1.0 - alpha_bar) * noise
    return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise


def predict_x0(schedule: DiffusionSchedule, x_t: torch.Tensor, t: Step, eps: torch.Tensor) -> torch.Tensor:
    """The clean data implied by a noise prediction: x0 = (x_t - sqrt(1 - a_t)·eps) / sqrt(a_t).

    Args:
        x_t: float tensor [B, ...] at step t.
        t: an int step in 0..T, or an int64 tensor [B].
        eps: float tensor shaped like x_t, the predicted noise.

    Returns:
        tensor shaped like x_t.
    """
    _check_batch("x_t", x_t)
    _check_step_or_steps("t", t, x_t, schedule, lowest=0)
    _check_same_shape("eps", eps, x_t, "x_t")
    alpha_bar = _at(schedule.alphas_cumprod, t, x_t)
    if isinstance(alpha_bar, float):
        return (x_t - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    return (x_t - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def posterior_mean_variance(
    schedule: DiffusionSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: Step
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the DDPM posterior q(x_{t-1} | x_t, x0).

    mean = β_t·sqrt(a_{t-1}) / (1 - a_t) · x0 + (1 - a_{t-1})·sqrt(α_t) / (1 - a_t) · x_t
    variance = β_t·(1 - a_{t-1}) / (1 - a_t)    (0 at t = 1: x_0 is then known exactly)

    Args:
        x0: float tensor [B, ...], clean data (or its prediction).
        x_t: float tensor shaped like x0, at step t.
        t: an int step in 1..T, or an int64 tensor [B] of steps in 1..T.

    Returns:
        (mean, variance): mean shaped like x_t; variance a float tensor that broadcasts against
        x_t ([B, 1, ...] for per-sample steps, a 0-dim tensor for an int step), in x_t's dtype.
    """
    _check_batch("x_t", x_t)
    _check_same_shape("x0", x0, x_t, "x_t")
    _check_step_or_steps("t", t, x_t, schedule, lowest=1)
    previous = t - 1
    beta = _at(schedule.betas, t, x_t)
    alpha = _at(schedule.alphas, t, x_t)
    alpha_bar = _at(schedule.alphas_cumprod, t, x_t)
    alpha_bar_prev = _at(schedule.alphas_cumprod, previous, x_t)
    sqrt = math.sqrt if isinstance(beta, float) else torch.sqrt
    mean = (beta * sqrt(alpha_bar_prev) / (1.0 - alpha_bar)) * x0 + (
        (1.0 - alpha_bar_prev) * sqrt(alpha) / (1.0 - alpha_bar)
    ) * x_t
    variance = beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    if isinstance(variance, float):
        variance = torch.tensor(variance, dtype=x_t.dtype, device=x_t.device)
    return mean, variance


# ----------------------------------------------------------------------------- training


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


# ----------------------------------------------------------------------------- parameterizations

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
    if spacing not in ("uniform", "quadratic"):
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
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
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


# ----------------------------------------------------------------------------- samplers


@torch.no_grad()
def ddpm_sample(
    schedule: DiffusionSchedule,
    eps_model: EpsModel,
    x: torch.Tensor,
    *,
    start_step: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Ancestral DDPM sampling (variance β_t) from ``start_step`` down to data.

    Args:
        eps_model: callable (x_t [B, ...], index int64 [B] = step - 1) -> eps [B, ...].
        x: float tensor [B, ...] at ``start_step``: N(0, I) noise for fresh samples.
        start_step: int in 0..T (default T); 0 returns a copy of x without any step.
        generator: source of the per-step noise.
        callback: called as callback(i, start_step) after network step i = 1..start_step.

    Returns:
        tensor shaped like x: the sample at step 0.
    """
    _check_batch("x", x)
    start_step = schedule.num_steps if start_step is None else start_step
    _check_step("start_step", start_step, schedule, lowest=0)
    x = x.clone()
    for i, t in enumerate(range(start_step, 0, -1), start=1):
        eps = _predict_eps(eps_model, x, t)
        noise = _randn_like(x, generator) if t > 1 else None
        x = ddpm_step(schedule, x, eps, t, noise)
        _report(callback, i, start_step)
    return x


@torch.no_grad()
def ddim_sample(
    schedule: DiffusionSchedule,
    eps_model: EpsModel,
    x: torch.Tensor,
    steps: Sequence[int],
    *,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """DDIM sampling over ``steps`` (usually from sampling_steps), then to data.

    Args:
        eps_model: callable (x_t [B, ...], index int64 [B] = step - 1) -> eps [B, ...].
        x: float tensor [B, ...] at step steps[0].
        steps: strictly descending ints in 1..T; one network evaluation per entry.
        eta: 0 (deterministic) .. 1.
        generator: source of the per-step noise when eta > 0.
        callback: called as callback(i, len(steps)) after network step i.

    Returns:
        tensor shaped like x: the sample at step 0.
    """
    _check_batch("x", x)
    steps = _check_descending_steps(steps, schedule)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    targets = steps[1:] + [0]
    for i, (t, t_next) in enumerate(zip(steps, targets), start=1):
        eps = _predict_eps(eps_model, x, t)
        noise = _randn_like(x, generator) if eta > 0.0 and t_next > 0 else None
        x = ddim_step(schedule, x, eps, t, t_next, eta, noise)
        _report(callback, i, len(steps))
    return x


@torch.no_grad()
def ddim_invert(
    schedule: DiffusionSchedule,
    eps_model: EpsModel,
    x0: torch.Tensor,
    steps: Sequence[int],
    *,
    refinement_iterations: int = 0,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Deterministic DDIM inversion: the noise that ddim_sample(steps, eta=0) maps back to x0.

    Each step a -> b evaluates the network at the target step b on the current x_a (the
    sampler will evaluate it on x_b); ``refinement_iterations`` fixed-point passes re-evaluate
    it on the new x_b, which makes the round trip exact up to the fixed point's convergence,
    at one extra network call per pass and step.

    Args:
        eps_model: callable (x_t [B, ...], index int64 [B] = step - 1) -> eps [B, ...].
        x0: float tensor [B, ...], clean latents.
        steps: the same strictly descending steps the sampler will use (1..T).
        refinement_iterations: fixed-point passes per step, >= 0.
        callback: called as callback(i, len(steps)) after step i.

    Returns:
        tensor shaped like x0: the latents at step steps[0].
    """
    _check_batch("x0", x0)
    steps = _check_descending_steps(steps, schedule)
    if not isinstance(refinement_iterations, int) or refinement_iterations < 0:
        raise ValueError(f"refinement_iterations must be an int >= 0, got {refinement_iterations!r}")
    ascending = [0] + steps[::-1]
    x = x0
    for i, (t, t_next) in enumerate(zip(ascending, ascending[1:]), start=1):
        x_next = ddim_step(schedule, x, _predict_eps(eps_model, x, t_next), t, t_next)
        for _ in range(refinement_iterations):
            x_next = ddim_step(schedule, x, _predict_eps(eps_model, x_next, t_next), t, t_next)
        x = x_next
        _report(callback, i, len(steps))
    return x


@torch.no_grad()
def diffuse_denoise(
    schedule: DiffusionSchedule,
    eps_model: EpsModel,
    x0: torch.Tensor,
    tau: int,
    *,
    num_steps: Optional[int] = None,
    spacing: str = "uniform",
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Variations: diffuse x0 to step tau, then denoise back to data.

    Small tau stays close to x0; tau = T ignores it. With ``num_steps`` None every step
    tau..1 is an ancestral DDPM step; otherwise DDIM with ``num_steps`` steps (capped at tau)
    spaced by ``spacing`` from tau down.

    Args:
        eps_model: callable (x_t [B, ...], index int64 [B] = step - 1) -> eps [B, ...].
        x0: float tensor [B, ...], clean latents.
        tau: int step in 0..T; 0 returns a copy of x0.
        num_steps: DDIM step count >= 1, or None for DDPM.
        spacing: "uniform" or "quadratic" (DDIM only).
        eta: DDIM eta (DDIM only).
        generator: source of the diffusion noise and of the sampler's noise.
        callback: called as callback(i, total) after every network step.

    Returns:
        tensor shaped like x0.
    """
    _check_batch("x0", x0)
    _check_step("tau", tau, schedule, lowest=0)
    if num_steps is not None and (not isinstance(num_steps, int) or num_steps < 1):
        raise ValueError(f"num_steps must be None or an int >= 1, got {num_steps!r}")
    x_tau = q_sample(schedule, x0, tau, generator=generator)
    if tau == 0:
        return x_tau
    if num_steps is None:
        return ddpm_sample(schedule, eps_model, x_tau, start_step=tau, generator=generator, callback=callback)
    steps = sampling_steps(schedule, min(num_steps, tau), spacing, start=tau)
    return ddim_sample(schedule, eps_model, x_tau, steps, eta=eta, generator=generator, callback=callback)


@torch.no_grad()
def masked_sample(
    schedule: DiffusionSchedule,
    eps_model: EpsModel,
    x0: torch.Tensor,
    known_mask: torch.Tensor,
    *,
    start_step: Optional[int] = None,
    jump_length: int = 10,
    resamples: int = 1,
    generator: Optional[torch.Generator] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """RePaint-style inpainting: regenerate the entries of x0 outside ``known_mask`` so that
    they fit the known entries, which come back unchanged.

    Starts from x0 diffused to ``start_step`` (T: the unknown part is fresh noise; smaller:
    it keeps the rough layout of x0). Every step denoises with ancestral DDPM and replaces the
    known entries by x0 diffused to the new step. With ``resamples`` > 1, every
    ``jump_length`` steps the sample is diffused back up ``jump_length`` steps and that stretch
    is denoised again, so the generated part can adapt to the known part.

    Args:
        eps_model: callable (x_t [B, ...], index int64 [B] = step - 1) -> eps [B, ...].
        x0: float tensor [B, ...], the latents holding the known entries.
        known_mask: bool tensor broadcastable to x0, True where an entry is known (for latent
            points [B, N, 4] typically [B, N, 1]).
        start_step: int in 0..T (default T).
        jump_length: steps per re-noising jump, >= 1.
        resamples: times each stretch is denoised in all, >= 1 (1: no resampling).
        generator: source of all noise.
        callback: called as callback(i, total) after network step i, total being the number
            of denoising steps on the RePaint path.

    Returns:
        tensor shaped like x0, equal to x0 wherever known_mask is True.
    """
    _check_batch("x0", x0)
    known_mask = _check_known_mask(known_mask, x0)
    start_step = schedule.num_steps if start_step is None else start_step
    _check_step("start_step", start_step, schedule, lowest=0)
    path = repaint_path(start_step, jump_length, resamples)
    total = sum(1 for t, t_next in zip(path, path[1:]) if t_next < t)
    x = q_sample(schedule, x0, start_step, generator=generator)
    done = 0
    for t, t_next in zip(path, path[1:]):
        if t_next > t:
            x = _diffuse_further(schedule, x, t, t_next, generator)
            continue
        eps = _predict_eps(eps_model, x, t)
        unknown = ddpm_step(schedule, x, eps, t, _randn_like(x, generator) if t > 1 else None)
        known = q_sample(schedule, x0, t_next, generator=generator) if t_next > 0 else x0
        x = torch.where(known_mask, known, unknown)
        done += 1
        _report(callback, done, total)
    return x


@torch.no_grad()
def masked_ddim_sample(
    schedule: DiffusionSchedule,
    eps_model: EpsModel,
    x0: torch.Tensor,
    known_mask: torch.Tensor,
    steps: Sequence[int],
    *,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Inpainting in few steps: DDIM over ``steps`` from noise, the known entries replaced after
    every step by x0 diffused to the step reached (RePaint's replacement, without resampling).

    Far cheaper than ``masked_sample`` (one network call per entry of ``steps``), at the cost of
    a looser fit between the known and regenerated parts.

    Args:
        eps_model: callable (x_t [B, ...], index int64 [B] = step - 1) -> eps [B, ...].
        x0: float tensor [B, ...], the latents holding the known entries.
        known_mask: bool tensor broadcastable to x0, True where an entry is known.
        steps: strictly descending ints in 1..T (usually from sampling_steps).
        eta: DDIM eta, 0..1.
        generator: source of all noise.
        callback: called as callback(i, len(steps)) after network step i.

    Returns:
        tensor shaped like x0, equal to x0 wherever known_mask is True.
    """
    _check_batch("x0", x0)
    known_mask = _check_known_mask(known_mask, x0)
    steps = _check_descending_steps(steps, schedule)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    x = torch.where(known_mask, q_sample(schedule, x0, steps[0], generator=generator), _randn_like(x0, generator))
    targets = steps[1:] + [0]
    for i, (t, t_next) in enumerate(zip(steps, targets), start=1):
        eps = _predict_eps(eps_model, x, t)
        noise = _randn_like(x, generator) if eta > 0.0 and t_next > 0 else None
        unknown = ddim_step(schedule, x, eps, t, t_next, eta, noise)
        known = q_sample(schedule, x0, t_next, generator=generator) if t_next > 0 else x0
        x = torch.where(known_mask, known, unknown)
        _report(callback, i, len(steps))
    return x


def _check_known_mask(known_mask, x0):
    """known_mask on x0's device, after checking it is bool and broadcasts to x0."""
    if not isinstance(known_mask, torch.Tensor) or known_mask.dtype != torch.bool:
        raise ValueError("known_mask must be a bool tensor (True where an entry is known)")
    try:
        if torch.broadcast_shapes(known_mask.shape, x0.shape) != x0.shape:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(
            f"known_mask of shape {list(known_mask.shape)} does not broadcast to x0 {list(x0.shape)}"
        ) from None
    return known_mask.to(x0.device)


def _check_descending_steps(steps: Sequence[int], schedule: DiffusionSchedule) -> List[int]:
    steps = list(steps)
    if not steps:
        raise ValueError("steps must hold at least one step")
    for t in steps:
        _check_step("steps entry", t, schedule, lowest=1)
    if any(later >= earlier for earlier, later in zip(steps, steps[1:])):
        raise ValueError(f"steps must be strictly descending, got {steps}")
    return steps
