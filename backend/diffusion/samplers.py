"""The samplers: one denoising loop over a path of steps, the public samplers built on it, and
``Sampler``, the choice between DDPM and DDIM that a request makes, built once from its settings."""
import dataclasses
from typing import Callable, List, Optional, Sequence

import torch

from backend.diffusion.schedule import (
    DiffusionSchedule, EpsModel, ProgressCallback, _check_batch, _check_eta, _check_step, _randn_like, q_sample,
)
from backend.diffusion.steps import (
    SPACINGS, _check_descending_steps, _diffuse_further, ddim_step, ddpm_step, repaint_path, sampling_steps,
)

SAMPLERS = ("ddim", "ddpm")  # the kinds Sampler runs; backend/op_schema.py offers the same (tested)

# update(schedule, x_t, eps, t, t_next, generator) -> x at t_next, for a downward move t > t_next
Update = Callable[[DiffusionSchedule, torch.Tensor, torch.Tensor, int, int, Optional[torch.Generator]], torch.Tensor]
# replace_known(x, t, generator) -> x with its known entries set to the known data at step t
KnownRegion = Callable[[torch.Tensor, int, Optional[torch.Generator]], torch.Tensor]


# ----------------------------------------------------------------------------- the loop


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


def _ddpm_update(schedule, x, eps, t, t_next, generator):
    # ancestral moves go down by one (t_next = t - 1); the last, to data, adds no noise
    return ddpm_step(schedule, x, eps, t, _randn_like(x, generator) if t > 1 else None)


def _ddim_update(eta: float) -> Update:
    def update(schedule, x, eps, t, t_next, generator):
        noise = _randn_like(x, generator) if eta > 0.0 and t_next > 0 else None
        return ddim_step(schedule, x, eps, t, t_next, eta, noise)
    return update


def _known_region(schedule: DiffusionSchedule, x0: torch.Tensor, known_mask: torch.Tensor) -> KnownRegion:
    """RePaint's replacement: the known entries become x0 diffused to the step reached (x0
    itself at step 0, so they come back unchanged)."""
    def replace_known(x, t, generator):
        known = q_sample(schedule, x0, t, generator=generator) if t > 0 else x0
        return torch.where(known_mask, known, x)
    return replace_known


def _denoise(
    schedule: DiffusionSchedule,
    eps_model: EpsModel,
    x: torch.Tensor,
    path: Sequence[int],
    update: Update,
    generator: Optional[torch.Generator],
    callback: Optional[ProgressCallback],
    replace_known: Optional[KnownRegion] = None,
) -> torch.Tensor:
    """The one sampler loop: walk x along ``path`` (steps, x at path[0], ending at 0).

    A downward move t -> t_next calls the network once at t, applies ``update``, then
    ``replace_known`` if given, and reports callback(i, total) with total the number of
    downward moves. An upward move is a RePaint re-noising jump: fresh forward noise, no
    network call. The order of the random draws (update, then replacement, per move) is part
    of every seeded sampler's output.
    """
    path = list(path)
    moves = list(zip(path, path[1:]))
    total = sum(1 for t, t_next in moves if t_next < t)
    done = 0
    for t, t_next in moves:
        if t_next > t:
            x = _diffuse_further(schedule, x, t, t_next, generator)
            continue
        x = update(schedule, x, _predict_eps(eps_model, x, t), t, t_next, generator)
        if replace_known is not None:
            x = replace_known(x, t_next, generator)
        done += 1
        _report(callback, done, total)
    return x


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
    path = range(start_step, -1, -1)
    return _denoise(schedule, eps_model, x.clone(), path, _ddpm_update, generator, callback)


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
    _check_eta(eta)
    return _denoise(schedule, eps_model, x, steps + [0], _ddim_update(eta), generator, callback)


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
    # Not _denoise: each upward step evaluates the network at its target and may refine it.
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
    sampler = Sampler("ddpm") if num_steps is None else Sampler("ddim", num_steps, eta, spacing)
    return sampler.sample(schedule, eps_model, x_tau, start=tau, generator=generator, callback=callback)


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
    x = q_sample(schedule, x0, start_step, generator=generator)
    return _denoise(schedule, eps_model, x, path, _ddpm_update, generator, callback,
                    _known_region(schedule, x0, known_mask))


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
    _check_eta(eta)
    # unlike masked_sample, the unknown part starts from pure noise, not from x0 diffused
    x = torch.where(known_mask, q_sample(schedule, x0, steps[0], generator=generator), _randn_like(x0, generator))
    return _denoise(schedule, eps_model, x, steps + [0], _ddim_update(eta), generator, callback,
                    _known_region(schedule, x0, known_mask))


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


# ----------------------------------------------------------------------------- a request's sampler


@dataclasses.dataclass(frozen=True)
class Sampler:
    """The sampler a request chose: DDIM in ``steps`` network calls (η = ``eta``, steps spaced
    by ``spacing``), or "ddpm": ancestral DDPM through every step (``steps``, ``eta`` and
    ``spacing`` unused). Built once from the request's settings; its methods are the one place
    that picks the DDPM or the DDIM function.

    Nothing is checked on construction (the bound on ``steps`` is the model's T): call
    ``validate`` with the model's T where settings come in; the methods trust them.
    """

    sampler: str = "ddim"
    steps: int = 25
    eta: float = 0.0
    spacing: str = "uniform"

    def validate(self, num_steps: int) -> None:
        """Raise ValueError naming the first setting a schedule of ``num_steps`` steps refuses."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or not 1 <= self.steps <= num_steps:
            raise ValueError(f"steps must be an integer in 1..{num_steps}, got {self.steps!r}")
        _check_eta(self.eta)
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {self.spacing!r}")

    @property
    def is_ddpm(self) -> bool:
        """Ancestral DDPM through every step: stochastic, so with no DDIM path to invert."""
        return self.sampler == "ddpm"

    @property
    def ddim_step_count(self) -> Optional[int]:
        """The network calls of a DDIM pass, None for DDPM: diffuse_denoise's ``num_steps``."""
        return None if self.is_ddpm else self.steps

    def network_calls(self, num_steps: int) -> int:
        """Network evaluations of one full sampling pass from noise at step ``num_steps`` (T)."""
        return num_steps if self.is_ddpm else self.steps

    def ddim_steps(self, schedule: DiffusionSchedule, start: Optional[int] = None) -> List[int]:
        """The steps a DDIM pass from ``start`` (default T) visits: min(steps, start) of them."""
        start = schedule.num_steps if start is None else start
        return sampling_steps(schedule, min(self.steps, start), self.spacing, start=start)

    def sample(self, schedule: DiffusionSchedule, eps_model: EpsModel, x: torch.Tensor, *,
               start: Optional[int] = None, generator: Optional[torch.Generator] = None,
               callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """x at step ``start`` (default T, where x is N(0, I) noise) denoised to data:
        ddpm_sample or ddim_sample over ``ddim_steps``."""
        if self.is_ddpm:
            return ddpm_sample(schedule, eps_model, x, start_step=start, generator=generator, callback=callback)
        return ddim_sample(schedule, eps_model, x, self.ddim_steps(schedule, start), eta=self.eta,
                           generator=generator, callback=callback)

    def inpaint(self, schedule: DiffusionSchedule, eps_model: EpsModel, x0: torch.Tensor,
                known_mask: torch.Tensor, *, jump_length: int = 10, resamples: int = 1,
                generator: Optional[torch.Generator] = None,
                callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """x0 with the entries outside ``known_mask`` regenerated from step T: full RePaint
        (masked_sample, with ``jump_length`` and ``resamples``) for DDPM, masked_ddim_sample
        over ``ddim_steps`` for DDIM (which has no resampling)."""
        if self.is_ddpm:
            return masked_sample(schedule, eps_model, x0, known_mask, jump_length=jump_length, resamples=resamples,
                                 generator=generator, callback=callback)
        return masked_ddim_sample(schedule, eps_model, x0, known_mask, self.ddim_steps(schedule), eta=self.eta,
                                  generator=generator, callback=callback)
