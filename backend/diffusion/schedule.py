"""The noise schedule, the forward process q(x_t | x_0) and its posterior, and the argument
checks and small helpers every part of backend.diffusion shares."""
import math
from typing import Callable, Optional, Tuple, Union

import torch

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


def _check_eta(eta) -> None:
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")


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
