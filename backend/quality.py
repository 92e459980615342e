"""Measures of what a trained model makes, for ablations, the default model's recipe and its
card: held-out procedural shapes, generation metrics against them, the category of each sample's
nearest held-out shape, and the samples' scale against the data's.

All point sets here are in the model's normalized space, float [S, N, 3].
"""
from typing import Dict, List, Optional, Sequence

import torch

from backend.metrics import chamfer_distance, generation_metrics, pairwise_distances

HELD_OUT_FIRST_SEED = 100_000  # procedural seeds far from any training seed (0..shapes_per_category)


def held_out_shapes(model, categories: Sequence[str], per_category: int, first_seed: int = HELD_OUT_FIRST_SEED):
    """(points float [C·per_category, N, 3] normalized as the model's data, category names) of
    procedural shapes no training run saw, `per_category` of each category, interleaved as the
    procedural dataset orders them (shape i is of category i mod C): use the returned names."""
    from backend.data.datasets import ProceduralDataset

    dataset = ProceduralDataset(list(categories), shapes_per_category=per_category, first_seed=first_seed,
                                normalization=model.normalization, subsample="first",
                                points_per_shape=model.config.vae.num_points)
    points = torch.stack([dataset[i] for i in range(len(dataset))])
    return points, [dataset.category(i) for i in range(len(dataset))]


def half_extent(points: torch.Tensor) -> float:
    """The median over shapes of half the longest side of each shape's bounding box."""
    sides = points.amax(dim=1) - points.amin(dim=1)
    return float(sides.amax(dim=1).median() / 2)


def nearest_categories(generated: torch.Tensor, reference: torch.Tensor, labels: Sequence[str]) -> List[str]:
    """The category of each generated shape's nearest reference shape (Chamfer distance)."""
    distances = pairwise_distances(generated, reference, chamfer_distance)
    return [labels[int(i)] for i in distances.argmin(dim=1)]


def category_shares(found: Sequence[str], wanted: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """{category: share of `found` that is it}, or with `wanted` (one per entry) the share of
    entries whose found category is the wanted one, per wanted category."""
    if wanted is None:
        names = sorted(set(found))
        return {name: sum(f == name for f in found) / len(found) for name in names}
    shares = {}
    for name in sorted(set(wanted)):
        hits = [f == name for f, w in zip(found, wanted) if w == name]
        shares[name] = sum(hits) / len(hits)
    return shares


def generation_report(generated: torch.Tensor, reference: torch.Tensor, labels: Sequence[str],
                      baseline: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """Chamfer MMD, COV and 1-NNA of `generated` against `reference`, the share of samples whose
    nearest reference is each category, the samples' scale against the reference's, and with
    `baseline` (real shapes as many as `generated`, not in `reference`) the same 1-NNA of real
    against real: the best a model can score at this set size."""
    generated, reference = generated.float().cpu(), reference.float().cpu()
    metrics = generation_metrics(generated, reference, emd="none")
    report = {key: metrics[key] for key in ("1-NNA-CD", "COV-CD", "MMD-CD")}
    report["nearest_category_shares"] = category_shares(nearest_categories(generated, reference, labels))
    report["half_extent"] = half_extent(generated)
    report["reference_half_extent"] = half_extent(reference)
    report["finite"] = bool(torch.isfinite(generated).all())
    if baseline is not None:
        report["real_vs_real_1-NNA-CD"] = generation_metrics(baseline.float().cpu(), reference, emd="none")["1-NNA-CD"]
    return report


def training_shapes(model, categories: Sequence[str], per_category: int):
    """Real shapes from the training seeds (0..), for the real-against-real baseline."""
    return held_out_shapes(model, categories, per_category, first_seed=0)


def save_contact_sheet(points: torch.Tensor, path: str, columns: int = 8) -> str:
    """A PNG of the shapes at their true scale (one shared scale, each labelled with its size)."""
    from backend.render import contact_sheet

    return contact_sheet([cloud.detach().cpu().numpy() for cloud in points], path, columns=columns, true_scale=True)


@torch.no_grad()
def noise_error_by_step(model, shapes: torch.Tensor, steps=(10, 50, 150, 300, 600), seed: int = 0) -> Dict[int, float]:
    """{step t: the point prior's mean squared noise error on the xyz of the latent points}, for
    posterior samples of `shapes` diffused to t. 1.0 is no better than predicting no noise; the
    fine surface is made at the low steps, so this says where a point prior falls short."""
    from backend import diffusion
    from backend.pipelines import encode

    generator = torch.Generator().manual_seed(seed)
    shape_latent, latent_points = encode(model, shapes, generator)
    eps_model = model.point_eps_model(shape_latent)
    errors = {}
    for t in steps:
        noise = torch.randn(latent_points.shape, generator=generator)
        noisy = diffusion.q_sample(model.schedule, latent_points, t, noise)
        predicted = eps_model(noisy, torch.full((len(shapes),), t - 1, dtype=torch.int64))
        errors[int(t)] = float((predicted - noise)[..., :3].square().mean())
    return errors


@torch.no_grad()
def point_prior_chamfer(model, shapes: torch.Tensor, steps: int = 25, seed: int = 0) -> float:
    """How well the h0 prior alone makes a shape: the mean Chamfer distance between `shapes` and
    the decoding of their own z0 with latent points sampled from noise (DDIM, `steps`) given
    that z0. The z0 prior plays no part, so this isolates the point prior; the VAE's own
    reconstruction error is its floor. (The noise error per step cannot show this: the part
    of the noise along the surface cannot be told from the surface itself, whatever the model.)"""
    from backend import diffusion
    from backend.pipelines import encode

    generator = torch.Generator().manual_seed(seed)
    shape_latent, latent_points = encode(model, shapes, generator)
    noise = torch.randn(latent_points.shape, generator=generator)
    made = diffusion.ddim_sample(model.schedule, model.point_eps_model(shape_latent), noise,
                                 diffusion.sampling_steps(model.schedule, steps, "uniform"))
    return float(chamfer_distance(model.vae.decode(shape_latent, made), shapes).mean())


@torch.no_grad()
def point_template_chamfer(model, shapes: torch.Tensor, seed: int = 0) -> float:
    """How well the point template alone makes a shape: the mean Chamfer distance between
    `shapes` and the decoding of their own z0 (a posterior sample, or the posterior mean for a
    template of means: what it maps) with the template's latent points; `point_prior_chamfer`'s
    twin for a model with a point template."""
    encoding = model.vae.encode(shapes, sample=True, generator=torch.Generator().manual_seed(seed))
    means = model.config.point_template.shape_latent == "mean"
    shape_latent = encoding.shape_latent_mean if means else encoding.shape_latent
    made = model.point_template(shape_latent)
    return float(chamfer_distance(model.vae.decode(shape_latent, made), shapes).mean())


def _chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(chamfer_distance(a[None], b[None]))


def interpolation_checks(frames: torch.Tensor, points_a: torch.Tensor, points_b: torch.Tensor,
                         error_a: float, error_b: float) -> Dict[str, object]:
    """Whether an interpolation `frames` [K, N, 3] from shape A to shape B ([N, 3] each) does what
    an artist expects: it starts at A and ends at B (within 3 times the VAE's own reconstruction
    error `error_a` / `error_b` there, plus 2% of the A-to-B distance), its distance to A grows
    and to B shrinks at all but one step each, and no step moves the points more than 3 times
    the mean step. Returns each check (bool) under its name, "all", the distances behind them,
    and "detour": the largest (distance to A + distance to B) / (A to B) of the middle frames,
    about 1 for frames on the way from A to B, more for blobs off it."""
    apart = _chamfer(points_a, points_b)
    to_a = [_chamfer(frame, points_a) for frame in frames]
    to_b = [_chamfer(frame, points_b) for frame in frames]
    steps = (frames[1:] - frames[:-1]).norm(dim=-1).mean(dim=-1)
    monotone = len(frames) - 2  # all steps but one
    checks = {
        "starts_at_a": to_a[0] <= 3 * error_a + 0.02 * apart,
        "ends_at_b": to_b[-1] <= 3 * error_b + 0.02 * apart,
        "leaves_a": to_a[-1] > 0.5 * apart and sum(b > a for a, b in zip(to_a, to_a[1:])) >= monotone,
        "nears_b": to_b[0] > 0.5 * apart and sum(b < a for a, b in zip(to_b, to_b[1:])) >= monotone,
        "even_steps": float(steps.max()) <= 3 * float(steps.mean()),
    }
    detour = max(((a + b) / apart for a, b in zip(to_a[1:-1], to_b[1:-1])), default=1.0)
    return {**checks, "all": all(checks.values()), "to_a": to_a, "to_b": to_b, "apart": apart,
            "steps": steps.tolist(), "detour": detour}


@torch.no_grad()
def check_interpolation(model, frames: torch.Tensor, points_a: torch.Tensor, points_b: torch.Tensor):
    """`interpolation_checks` of `frames` from A to B made by `model`, with the VAE's own
    reconstruction errors of A and B from the latents interpolation starts from (posterior
    samples, drawn as `pipelines.interpolate` draws them)."""
    from backend.pipelines import _fixed_generator, encode

    shapes = torch.stack([points_a, points_b])
    decoded = model.vae.decode(*encode(model, shapes, _fixed_generator()))
    error_a, error_b = chamfer_distance(decoded, shapes).tolist()
    return interpolation_checks(frames, points_a, points_b, error_a, error_b)
