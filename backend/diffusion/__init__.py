"""Denoising diffusion math shared by LION's two latent DDMs (the z0 prior and the h0 prior).

This package knows nothing of networks or pipelines. It holds the noise schedule and the
forward process (schedule.py), what a network predicts (ε, v, mixed score) and its conversion
to ε, ``as_eps_model`` (parameterization.py), the training loss (loss.py), the step plans and
one-step updates (steps.py), and the samplers over an ``eps_model(x_t, index) -> eps`` callable,
all walking one loop, with ``Sampler``, a request's choice of DDPM or DDIM (samplers.py).
Every function works on any tensor shape with the batch first ([B, 128] shape latents,
[B, N, 4] latent points, ...), on any device. Import the names from here
(``from backend import diffusion``); the submodules are the layout, not the interface.

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

The public functions check their arguments (training code calls them too); ``Sampler``
checks a request's settings once, in ``Sampler.validate``.
"""
from backend.config import PREDICTIONS
from backend.diffusion.loss import training_loss
from backend.diffusion.parameterization import as_eps_model, eps_from_output, mixed_eps, velocity
from backend.diffusion.samplers import (
    SAMPLERS, Sampler, ddim_invert, ddim_sample, ddpm_sample, diffuse_denoise, masked_ddim_sample, masked_sample,
)
from backend.diffusion.schedule import (
    DiffusionSchedule, EpsModel, ProgressCallback, Step, posterior_mean_variance, predict_x0, q_sample,
)
from backend.diffusion.steps import SPACINGS, ddim_step, ddpm_step, repaint_path, sampling_steps

__all__ = [
    "PREDICTIONS", "SAMPLERS", "SPACINGS",
    "DiffusionSchedule", "EpsModel", "ProgressCallback", "Step",
    "q_sample", "predict_x0", "posterior_mean_variance",
    "velocity", "eps_from_output", "mixed_eps", "as_eps_model",
    "training_loss",
    "sampling_steps", "repaint_path", "ddpm_step", "ddim_step",
    "ddpm_sample", "ddim_sample", "ddim_invert", "diffuse_denoise", "masked_sample", "masked_ddim_sample",
    "Sampler",
]
