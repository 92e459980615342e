"""The LION model bundle: the VAE, both latent priors, the config and the data normalization.

This is what a checkpoint holds and what the pipelines load. Its state dict has three parts,
`vae.*`, `shape_prior.*` (the z0 prior) and `point_prior.*` (the h0 prior), and a fourth,
`voxel_encoder.*`, in models whose encoders were also fine-tuned on voxel guides, and
`point_template.*` in models whose config has a point template (not in LION).
"""
import copy
import dataclasses
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from backend import diffusion
from backend.config import LionConfig, PointTemplateConfig, validate_config
from backend.models.priors import LatentPointPrior, ShapeLatentPrior
from backend.models.template import LatentPointTemplate
from backend.models.vae import LionVAE


class VoxelGuideEncoder(nn.Module):
    """Copies of the VAE's two encoders, fine-tuned so that points on a blocky voxel guide
    encode to the latents of the clean shape the guide was made from
    (`python -m backend.train voxel-encoder`). The VAE's decoder and priors use its latents
    unchanged. `encode` is LionVAE.encode: the same posteriors, from these encoders.
    """

    def __init__(self, vae: LionVAE):
        super().__init__()
        self.config = vae.config
        self.shape_latent_encoder = copy.deepcopy(vae.shape_latent_encoder)
        self.latent_point_encoder = copy.deepcopy(vae.latent_point_encoder)

    encode = LionVAE.encode
    sample_latent_points = LionVAE.sample_latent_points

    def forward(self, points):
        """points float [B, N, 3] on a guide's surface, normalized ->
        (z0 mean float [B, Dz], h0 mean float [B, N, 3 + Dh]), h0 conditioned on that z0."""
        encoding = self.encode(points, sample=False)
        return encoding.shape_latent, encoding.latent_points


class LionModel(nn.Module):
    """Every network of one LION model.

    Attributes: `config` (LionConfig), `normalization` (a `backend.data.normalization` object,
    or None when unknown), `vae` (LionVAE), `shape_prior` (ShapeLatentPrior, eps for z0 [B, Dz])
    and `point_prior` (LatentPointPrior, eps for h0 [B, N, 3 + Dh] given z0);
    `point_template` (LatentPointTemplate, h0 from z0 in one pass) when the config has one, else None;
    `voxel_encoder` (VoxelGuideEncoder) when `with_voxel_encoder`, else None.
    """

    def __init__(self, config: LionConfig, normalization=None, with_voxel_encoder: bool = False):
        super().__init__()
        if not isinstance(config, LionConfig):
            raise ValueError(f"config must be a LionConfig, got {type(config).__name__}")
        validate_config(config)
        self.config = config
        self.normalization = normalization
        self.vae = LionVAE(config.vae)
        schedule = config.diffusion
        logit_init = schedule.mixing_logit_init if schedule.prediction == "mixed" else None
        self.shape_prior = ShapeLatentPrior(config.shape_prior, config.vae.shape_latent_dim, logit_init)
        self.point_prior = LatentPointPrior(config.point_prior, config.latent_point_dim,
                                            config.vae.shape_latent_dim, config.vae.adaptive_norm_init_scale,
                                            num_points=config.vae.num_points, mixing_logit_init=logit_init)
        self.point_template = None
        if config.point_template.hidden_channels:
            self.point_template = LatentPointTemplate(config.point_template, config.vae.shape_latent_dim,
                                                      config.vae.num_points, config.latent_point_dim)
            if config.point_template.shape_latent == "mean":
                self.point_template.shape_prior = ShapeLatentPrior(config.shape_prior, config.vae.shape_latent_dim,
                                                                   logit_init)
        self.voxel_encoder = VoxelGuideEncoder(self.vae) if with_voxel_encoder else None
        self.schedule = diffusion.DiffusionSchedule(schedule.num_steps, schedule.beta_start, schedule.beta_end)

    def drop_point_template(self):
        """Remove the point template and its config entry (what retraining the VAE calls for:
        the template was fitted to the old VAE's latents)."""
        self.point_template = None
        self.config = dataclasses.replace(self.config, point_template=PointTemplateConfig())

    @property
    def categories(self):
        """The category names the shape prior can be asked for (empty: unconditional)."""
        return list(self.config.shape_prior.categories)

    def category_label(self, category: Optional[str]) -> Optional[int]:
        """The shape prior's label of a category name; None for None or "any" (no category)."""
        if category is None or category == "any":
            return None
        if category not in self.categories:
            known = ", ".join(self.categories) if self.categories else "none (this model is unconditional)"
            raise ValueError(f"category must be one of: any, {known}; got {category!r}")
        return self.categories.index(category)

    def _named_label(self, category: str) -> int:
        label = self.category_label(category)
        if label is None:
            raise ValueError("a list of categories names one category per shape; 'any' is not one")
        return label

    def _as_eps(self, network, prior):
        prediction = self.config.diffusion.prediction
        return diffusion.as_eps_model(self.schedule, network, prediction, getattr(prior, "mixing_logit", None))

    def draw_categories(self, count: int, generator: torch.Generator) -> Optional[List[str]]:
        """`count` category names drawn as often as the training shapes held them
        (`shape_prior.category_shares`), or None for a model that records no shares."""
        shares = self.config.shape_prior.category_shares
        if not shares:
            return None
        weights = torch.tensor(shares, dtype=torch.float64, device=generator.device)
        drawn = torch.multinomial(weights, count, replacement=True, generator=generator)
        return [self.categories[int(label)] for label in drawn]

    @property
    def generation_shape_prior(self) -> nn.Module:
        """The z0 prior that fresh shapes draw from: the point template's own, when it maps
        posterior means (config.PointTemplateConfig.shape_latent), else the shape prior."""
        return getattr(self.point_template, "shape_prior", None) or self.shape_prior

    def shape_eps_model(self, category: Union[None, str, Sequence[str]] = None, guidance: float = 1.0,
                        prior: Optional[nn.Module] = None):
        """eps_model(z_t [B, Dz], index [B]) -> noise prediction, for every sampler and for DDIM
        inversion, whatever the prior predicts.

        category: a name from `categories` (or None/"any"), or a list of names, one per shape of
        the batch. With a category, `guidance` is the classifier-free guidance scale w:
        eps = eps_any + w·(eps_category - eps_any), so 1 is the plain conditional prediction
        and larger values hold samples closer to the category.
        prior: the z0 prior (default: the shape prior; `generation_shape_prior` for Generate),
        one with the shape prior's categories.
        """
        prior = prior or self.shape_prior
        if isinstance(category, str) or category is None:
            label = self.category_label(category)
            if label is None:  # the prior's own "no category" prediction
                return self._as_eps(prior, prior)
            labels_of = lambda index: torch.full_like(index, label)  # noqa: E731
        else:
            per_shape = torch.tensor([self._named_label(name) for name in category], dtype=torch.int64)

            def labels_of(index):
                if len(index) != len(per_shape):
                    raise ValueError(f"{len(per_shape)} categories for a batch of {len(index)} shapes")
                return per_shape.to(index.device)

        if guidance == 1.0:  # the plain conditional prediction: no need for the unconditional one
            return self._as_eps(lambda x, index: prior(x, index, labels_of(index)), prior)

        def guided(x, index):
            labels = torch.cat([labels_of(index), torch.full_like(index, prior.no_category)])
            conditional, unconditional = prior(torch.cat([x, x]), torch.cat([index, index]), labels).chunk(2)
            return unconditional + guidance * (conditional - unconditional)

        # Guidance mixes raw outputs; every parameterization here is affine in them, so this
        # equals mixing the noise predictions.
        return self._as_eps(guided, prior)

    def point_eps_model(self, shape_latent):
        """eps_model(h_t [B, N, 3 + Dh], index [B]) -> noise prediction of the h0 prior given the
        shape latents z0 float [B, Dz]."""
        return self._as_eps(lambda x, index: self.point_prior(x, index, shape_latent), self.point_prior)

    @property
    def encode_voxel_guide(self):
        """The encoder for points on a voxel guide, or None when this model has no voxel encoder:
        a callable points float [B, N, 3] -> (z0 mean [B, Dz], h0 mean [B, N, 3 + Dh]), the
        form pipelines.variations takes as `encoder`."""
        return self.voxel_encoder

    def parameter_counts(self) -> Dict[str, int]:
        """Number of parameters per component, plus the VAE and overall totals."""
        def count(module: Optional[nn.Module]) -> int:
            return sum(p.numel() for p in module.parameters())

        return {
            "shape_latent_encoder": count(self.vae.shape_latent_encoder),
            "latent_point_encoder": count(self.vae.latent_point_encoder),
            "decoder": count(self.vae.decoder),
            "vae": count(self.vae),
            "shape_prior": count(self.shape_prior),
            "point_prior": count(self.point_prior),
            **({"point_template": count(self.point_template)} if self.point_template is not None else {}),
            **({"voxel_encoder": count(self.voxel_encoder)} if self.voxel_encoder is not None else {}),
            "total": count(self),
        }
