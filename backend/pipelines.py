"""Generation over a LionModel: the two latent DDMs, then the decoder (DESIGN.md §5).

Everything here works in the model's normalized space; the server and the command line map
artists' geometry into it and back. Samplers come from backend.diffusion and see the priors
through `LionModel.shape_eps_model` / `point_eps_model`, whatever they predict; a `progress`
callback (step, total, stage) sees every network step and may raise to cancel.

Shapes are encoded to posterior samples (`encode`), the latents the priors were trained on,
drawn with the request's generator so a seed gives the same result every time.
"""
from typing import Callable, Optional

import torch

from backend import diffusion, op_schema

Progress = Callable[[int, int, str], None]
DEFAULT_GUIDANCE = op_schema.field("sample", "guidance").default  # classifier-free guidance scale

# How the latent DDMs are sampled (DDIM in `steps` steps with η = `eta`, or full DDPM), built
# from a request as SamplerSettings(sampler=..., steps=..., eta=...); each pipeline validates it
# against the model's T on entry and then leaves the DDPM/DDIM choice to its methods.
SamplerSettings = diffusion.Sampler


def _stage_callback(progress: Optional[Progress], stage: str):
    if progress is None:
        return None
    return lambda step, total: progress(step, total, stage)


@torch.no_grad()
def sample(model, count, generator, settings: SamplerSettings = SamplerSettings(), progress: Optional[Progress] = None,
           category: Optional[str] = None, guidance: float = DEFAULT_GUIDANCE):
    """`count` new shapes: z0 from its DDM, h0 from its DDM given z0 (or from the model's point
    template, when it has one), decoded.

    generator: a torch.Generator (a CPU one gives the same shapes on every device).
    category: one of `model.categories`, or None/"any" for any category; `guidance` is the
    classifier-free guidance scale of a named category (1: plain conditional). With "any", a
    model that records how often each category was trained on draws each shape's category
    from those shares and samples z0 given it (guidance 1): the model's own p(category), then
    p(z0 | category). The prior's own "no category" prediction (what a model without shares
    uses) covered the categories less evenly: it made no lamps (models/default.md).
    Returns float [count, N, 3] in the model's normalized space.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    schedule = model.schedule
    settings.validate(schedule.num_steps)
    if category is None or category == "any":
        drawn = model.draw_categories(count, generator)
        if drawn is not None:
            category, guidance = drawn, 1.0
    shape_eps = model.shape_eps_model(category, guidance, prior=model.generation_shape_prior)
    device = next(model.parameters()).device
    vae_config = model.config.vae
    z_noise = torch.randn(count, vae_config.shape_latent_dim, generator=generator, device=generator.device)
    shape_latent = settings.sample(schedule, shape_eps, z_noise.to(device), generator=generator,
                                   callback=_stage_callback(progress, "shape latent"))
    if model.point_template is not None:  # one pass instead of the h0 prior's steps (config.PointTemplateConfig)
        latent_points = model.point_template(shape_latent)
        if progress is not None:
            progress(1, 1, "latent points")
        return model.vae.decode(shape_latent, latent_points)
    h_noise = torch.randn(count, vae_config.num_points, model.config.latent_point_dim, generator=generator,
                          device=generator.device)
    latent_points = settings.sample(schedule, model.point_eps_model(shape_latent), h_noise.to(device),
                                    generator=generator, callback=_stage_callback(progress, "latent points"))
    return model.vae.decode(shape_latent, latent_points)


def encode(model, points, generator, encoder=None):
    """Posterior samples (z0 [B, Dz], h0 [B, N, Dh+3]) of normalized points float [B, N, 3], as
    the priors were trained on: z0 ~ q(z0|x), then h0 ~ q(h0|x, z0). `encoder` is the VAE
    (default) or a model's voxel-guide encoder, which has the same `encode`."""
    encoding = (encoder or model.vae).encode(points, sample=True, generator=generator)
    return encoding.shape_latent, encoding.latent_points


def _fixed_generator():
    """For pipelines without a seed of their own (interpolation): the same encoding every time."""
    return torch.Generator().manual_seed(0)


def tau_from_similarity(similarity, num_steps):
    """The diffusion step (1..num_steps) an artist's similarity in [0, 1] means: 1 keeps the
    input (step 1), 0 starts afresh (step T); round((1 - similarity)·T) between."""
    if isinstance(similarity, bool) or not isinstance(similarity, (int, float)) or not 0.0 <= similarity <= 1.0:
        raise ValueError(f"similarity must be a number in [0, 1], got {similarity!r}")
    return int(min(num_steps, max(1, round((1.0 - similarity) * num_steps))))


def _check_tau(tau, schedule):
    if not isinstance(tau, int) or not 1 <= tau <= schedule.num_steps:
        raise ValueError(f"tau must be an integer step in 1..{schedule.num_steps}, got {tau!r}")


# Steps at which infer_category compares the categories' noise predictions, and noise draws per
# step: on 64 held-out shapes of the shipped model it names 61 right (models/default.md).
CATEGORY_TEST_STEPS = (100, 200, 300, 400, 500, 600)
CATEGORY_TEST_DRAWS = 4


@torch.no_grad()
def infer_category(model, shape_latent):
    """The category of each shape latent z0 (float [B, Dz]) by the model's class-conditional
    shape prior: the category whose conditional prediction best recovers the noise added to
    z0 (a diffusion classifier). Deterministic (fixed noises). Returns a list of B names;
    None for a model without categories."""
    if not model.categories:
        return None
    generator = _fixed_generator()
    errors = torch.zeros(shape_latent.shape[0], len(model.categories), device=shape_latent.device)
    for step in CATEGORY_TEST_STEPS:
        index = torch.full((shape_latent.shape[0],), step - 1, dtype=torch.int64, device=shape_latent.device)
        for _ in range(CATEGORY_TEST_DRAWS):
            noise = torch.randn(shape_latent.shape, generator=generator).to(shape_latent)
            noisy = diffusion.q_sample(model.schedule, shape_latent, step, noise)
            for label, name in enumerate(model.categories):
                predicted = model.shape_eps_model(name, 1.0)(noisy, index)
                errors[:, label] += (predicted - noise).square().mean(dim=1)
    return [model.categories[label] for label in errors.argmin(dim=1).tolist()]


def shape_category(model, points, encoder=None):
    """The category of the shape `points` (float [N, 3], normalized) by `infer_category` on
    its encoding (a fixed posterior draw), or None for a model without categories."""
    if not model.categories:
        return None
    shape_latent, _ = encode(model, points[None], _fixed_generator(), encoder)
    return infer_category(model, shape_latent)[0]


@torch.no_grad()
def variations(model, points, count, tau, generator, settings: SamplerSettings = SamplerSettings(),
               progress: Optional[Progress] = None, encoder=None, invert_points=True, category=None):
    """`count` shapes like `points` (float [N, 3], normalized).

    The input's z0 is diffused to step `tau` and denoised (diffuse-denoise), giving each
    variation its own shape latent. The latent points then follow one of two paths:
    - `invert_points` with DDIM (the default): they are inverted to `tau` along the model's own
      deterministic path given the input's z0, and sampled back given the new z0. The new z0
      is what varies the shape; the path is exact where the point prior is weak (the last,
      low-noise steps), so the variations keep the input's detail.
    - otherwise (and always with DDPM): diffused to `tau` with fresh noise and denoised given
      the new z0, LION's diffuse-denoise, which needs a point prior that removes the noise of
      the low steps well.
    Small tau stays close to the input, large tau makes new shapes of the same kind. DDIM uses
    min(steps, tau) steps from tau down.
    category: a category of a class-conditional model (the input's, `shape_category`) to
    denoise z0 given, so that variations of a table stay tables (unconditioned, tables became
    other things 5 times in 6 at tau 300; models/default.md); None: the unconditional prior.
    encoder: what encodes the points (see `encode`): the VAE by default, a voxel-guide encoder
    for voxel guides. Each variation draws its own posterior sample.
    Returns float [count, N, 3].
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    schedule = model.schedule
    settings.validate(schedule.num_steps)
    _check_tau(tau, schedule)
    shape_latent, latent_points = encode(model, points[None].expand(count, -1, -1), generator, encoder)
    common = dict(num_steps=settings.ddim_step_count, spacing=settings.spacing, eta=settings.eta, generator=generator)
    new_shape_latent = diffusion.diffuse_denoise(schedule, model.shape_eps_model(category, 1.0), shape_latent, tau,
                                                 callback=_stage_callback(progress, "shape latent"), **common)
    new_point_eps_model = model.point_eps_model(new_shape_latent)
    latent_points_callback = _stage_callback(progress, "latent points")
    if invert_points and not settings.is_ddpm:  # DDIM: sampled back along the path it was inverted on
        steps = settings.ddim_steps(schedule, tau)
        noisy = diffusion.ddim_invert(schedule, model.point_eps_model(shape_latent), latent_points, steps,
                                      callback=_stage_callback(progress, "inverting latent points"))
        new_latent_points = diffusion.ddim_sample(schedule, new_point_eps_model, noisy, steps, eta=settings.eta,
                                                  generator=generator, callback=latent_points_callback)
    else:
        new_latent_points = diffusion.diffuse_denoise(schedule, new_point_eps_model, latent_points, tau,
                                                      callback=latent_points_callback, **common)
    return model.vae.decode(new_shape_latent, new_latent_points)


def mix_spherically(a, b, weight_a):
    """sqrt(w)·a + sqrt(1-w)·b: keeps unit variance for independent Gaussian noises a and b."""
    return weight_a ** 0.5 * a + (1.0 - weight_a) ** 0.5 * b


def match_points(points_a, points_b):
    """The order of B's points that pairs them with A's at the least total squared distance
    (an optimal assignment; exact, about a second for 2048 points): int64 [N] with
    points_b[order][i] the partner of points_a[i]. points_a, points_b: float [N, D]."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(points_a.double().cpu(), points_b.double().cpu()).square()
    _, order = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(order, dtype=torch.int64, device=points_b.device)


INTERPOLATION_DEPTH = 400  # the step the latent points are blended at (models/default.md)


@torch.no_grad()
def interpolate(model, points_a, points_b, frames, settings: SamplerSettings = SamplerSettings(),
                progress: Optional[Progress] = None, inversion_refinement=3, depth=INTERPOLATION_DEPTH):
    """`frames` shapes morphing from A to B (float [N, 3] each, normalized).

    Both shapes are encoded. Their z0 are inverted to noise with deterministic DDIM, mixed
    with weight (1 - k/(K-1)) on A keeping unit variance, and sampled back. Their latent points
    are paired (B's reordered to match A's, `match_points`), inverted given each shape's own
    z0 only to step `depth`, blended linearly there and sampled back from `depth` given the
    frame's z0 (DDIM, min(steps, depth) steps). Blending paired points at a middle step moves
    each part of A towards its counterpart in B and lets the prior keep the frames shapes;
    mixing full noises instead made blobs between A and B (models/default.md).
    Point i of every frame comes from latent point i, so frames blend point by point.
    Returns float [frames, N, 3]; frame 0 reconstructs A and frame K-1 reconstructs B (its
    points reordered).
    """
    if not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames must be an integer >= 2, got {frames!r}")
    schedule = model.schedule
    settings.validate(schedule.num_steps)
    _check_tau(depth, schedule)
    steps = settings.ddim_steps(schedule)  # DDIM whatever the sampler: inversion needs its path
    point_steps = settings.ddim_steps(schedule, depth)
    shape_latent, latent_points = encode(model, torch.stack([points_a, points_b]), _fixed_generator())
    total = 2 * (len(steps) + len(point_steps))  # one tick per step: invert both latents, sample both
    done = [0]

    def tick(step, _):
        done[0] += 1
        if progress is not None:
            progress(done[0], total, "interpolating")

    z_noise = diffusion.ddim_invert(schedule, model.shape_eps_model(), shape_latent, steps,
                                    refinement_iterations=inversion_refinement, callback=tick)
    h_noisy = diffusion.ddim_invert(schedule, model.point_eps_model(shape_latent), latent_points,
                                    point_steps, refinement_iterations=inversion_refinement, callback=tick)
    order = match_points(latent_points[0], latent_points[1])
    weights = torch.linspace(1.0, 0.0, frames, device=shape_latent.device)
    z_mix = torch.stack([mix_spherically(z_noise[0], z_noise[1], w) for w in weights])
    h_mix = torch.stack([w * h_noisy[0] + (1 - w) * h_noisy[1][order] for w in weights])
    frame_shape_latent = diffusion.ddim_sample(schedule, model.shape_eps_model(), z_mix, steps, callback=tick)
    frame_latent_points = diffusion.ddim_sample(
        schedule, model.point_eps_model(frame_shape_latent), h_mix, point_steps, callback=tick)
    return model.vae.decode(frame_shape_latent, frame_latent_points)


@torch.no_grad()
def regenerate_region(model, points, keep, generator, settings: SamplerSettings = SamplerSettings(),
                      progress: Optional[Progress] = None, jump_length=10, resamples=1):
    """Keep the points where `keep` (bool [N]) is True, regenerate the others.

    points: float [N, 3], normalized, N the model's point count (a LION result: its latent
    point i sits near point i, so the mask carries over to the latent points). The shape latent
    is kept; the latent points outside the mask are resampled given the kept ones: with DDIM
    in `settings.steps` steps (replacement), or with DDPM as full RePaint (1000 steps, with
    `resamples` and `jump_length`).
    Returns float [1, N, 3].
    """
    if keep.shape != points.shape[:1] or keep.dtype != torch.bool:
        raise ValueError(f"keep must be a bool tensor of shape [{points.shape[0]}], got {keep.dtype} {list(keep.shape)}")
    schedule = model.schedule
    settings.validate(schedule.num_steps)
    shape_latent, latent_points = encode(model, points[None], generator)
    known = keep[None, :, None].expand_as(latent_points)
    point_prior = model.point_eps_model(shape_latent)
    new_latent_points = settings.inpaint(schedule, point_prior, latent_points, known, jump_length=jump_length,
                                         resamples=resamples, generator=generator,
                                         callback=_stage_callback(progress, "latent points"))
    return model.vae.decode(shape_latent, new_latent_points)


@torch.no_grad()
def voxel_guided(model, guide_points, count, tau, generator, settings: SamplerSettings = SamplerSettings(),
                 progress: Optional[Progress] = None, category=None):
    """`count` shapes that follow a blocky voxel guide, given as points on its outside faces
    (backend.voxels.voxel_surface_points) in the model's space, float [N, 3].

    The guide is encoded by the model's voxel-guide encoder where it ships one (else the VAE),
    and diffused to `tau` with fresh noise on the latent points too (LION's diffuse-denoise: that
    noise is what lets the prior replace the guide's blocks by detail), then denoised; z0 given
    `category` (None: unconditioned). Returns float [count, N, 3].
    """
    return variations(model, guide_points, count, tau, generator, settings, progress,
                      encoder=model.encode_voxel_guide, invert_points=False, category=category)
