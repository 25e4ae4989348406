r"""The multiscale model of "Non-Uniform Diffusion Models" §3.3.1 and its uniform baseline (§4.1), with their losses.

Score models (§3.3.1). Scale i has its own network s_i(c_i, t), a diffusers ``UNet2DModel`` that
sees the image of c_i (its inverse Haar transform, of size H / 2^(i-1)); the network predicts the
noise of c_i in image coordinates and the orthonormal transform maps it back exactly. Inputs are
preconditioned per coordinate by 1 / sqrt(alpha^2 rms^2 + sigma^2) (rms = the root mean square of
the coefficient's group in the training data), so that every scale sees unit-scale inputs.

Losses. Denoising score matching on scale i with t ~ U(R_i) (eq. 10):

- ``"likelihood"``: 1/2 v^T Lambda(t) v with v = grad log p(c_t | c_0) - s_i(c_t, t) and the
  likelihood weighting Lambda = G G^T = diag(g^2) of Theorem 1. For the log-linear VP,
  g^2 / sigma^2 = -d lambda / dt is a constant per group, so in noise space this is the simple
  loss with group weights (lambda_max - lambda_min) / (T_group - eps).
- ``"simple"``: || eps - eps_hat ||^2 (Ho et al. 2020), which §4.1 uses for the uniform baseline.

Both are divided by the number of coordinates D_i (a constant factor, so that the gradient scale
does not depend on the image size).

Uniform baseline (§4.1). :class:`UniformModel`: the beta-linear :class:`smcdiff.sde.VP` with one
``UNet2DModel`` at full resolution, eps-prediction and the same preconditioning.

Files: :mod:`smcdiff.persistence` (kinds ``"multiscale"`` and ``"uniform"``); the shipped digits
models live under ``smcdiff/assets/multiscale`` and load by name with :func:`load_multiscale`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ..dynamics import Callback
from ..persistence import CONFIG_NAME, Pretrained, read_config
from ..sampling import sample
from ..score import ScoreModel, prediction_to_score
from ..sde import SDE, VP
from .configs import MultiscaleConfig, UniformConfig
from .networks import EpsUNet
from .process import MultiscaleProcess
from .sampler import multiscale_sample

__all__ = ["Weighting", "MultiscaleModel", "UniformModel", "load_multiscale", "ASSET_DIR", "SHIPPED_MODELS"]

Weighting = Literal["likelihood", "simple"]

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "multiscale"
SHIPPED_MODELS = ("multiscale", "uniform")
"""Names of the shipped digits models under :data:`ASSET_DIR`."""


def check_images(model: MultiscaleModel | UniformModel, x0: Tensor) -> None:
    """A ``ValueError`` unless ``x0`` is a batch of the model's images, ``(B, C, H, W)``."""
    shape = (model.config.channels, model.config.image_size, model.config.image_size)
    if not isinstance(x0, Tensor) or x0.ndim != 4 or tuple(x0.shape[1:]) != shape:
        raise ValueError(f"x0 must have shape (B, {', '.join(map(str, shape))}), got {tuple(getattr(x0, 'shape', ()))}")


def check_weighting(weighting: str) -> None:
    if weighting not in get_args(Weighting):
        raise ValueError(f"weighting must be one of {get_args(Weighting)}, got {weighting!r}")


def denoising_loss(sde: SDE, eps_fn, c0: Tensor, t: Tensor, noise: Tensor, weighting: Weighting) -> Tensor:
    """Eq. 10 on one scale: c_t = alpha c_0 + sigma noise; mean over coordinates and rows.

    ``"likelihood"``: 1/2 v^T diag(g^2) v / D with v = grad log p(c_t | c_0) - s = (eps_hat - noise) / sigma.
    ``"simple"``: || eps_hat - noise ||^2 / D.
    """
    mean, std = sde.marginal(c0, t)
    c_t = mean + std * noise
    eps_hat = eps_fn(c_t, t)
    if weighting == "simple":
        return (eps_hat - noise).pow(2).flatten(1).mean(1).mean()
    co = sde.coefficients(t, c0.ndim - 1, like=c0)
    target = prediction_to_score("epsilon", c_t, noise, co.alpha, co.sigma2)  # -noise / sigma
    score = prediction_to_score("epsilon", c_t, eps_hat, co.alpha, co.sigma2)
    return 0.5 * (co.g2 * (target - score) ** 2).flatten(1).mean(1).mean()


class MultiscaleModel(nn.Module, Pretrained):
    """The per-scale score networks s_1..s_{n+1} of §3.3.1 with their forward process.

    Parameters
    ----------
    config : MultiscaleConfig
    generator : torch.Generator, optional; seeds the initial weights (see :meth:`UNetSpec.build`).

    Attributes
    ----------
    process : MultiscaleProcess
    packing : HaarPacking
    nets : ``nets[i - 1]`` is s_i, a UNet at the size of scale i.
    default_weighting : ``"likelihood"``, the weighting of Theorem 1 that §3.3.1 trains with.
    """

    model_kind = "multiscale"
    config_class = MultiscaleConfig
    default_weighting: Weighting = "likelihood"

    def __init__(self, config: MultiscaleConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(config, MultiscaleConfig):
            raise ValueError(f"config must be a MultiscaleConfig, got {type(config).__name__}")
        self.config = config
        self.packing = config.packing
        self.process = MultiscaleProcess(self.packing, config.snr_max, config.snr_min, config.eps)
        self.nets = nn.ModuleList(
            EpsUNet(spec, self.packing.scale_shape(i)[1], config.channels, generator)
            for i, spec in enumerate(config.unets, start=1)
        )
        levels = self.packing.group_level(torch.float32)
        rms = torch.tensor(config.data_rms, dtype=torch.float32)
        group = (self.config.levels + 1 - levels).long()  # a_n -> 0, d_i -> n + 1 - i
        self.register_buffer("rms", rms[group], persistent=False)  # (D,)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def scale_parameters(self) -> list[int]:
        """Parameter count of each s_i."""
        return [sum(p.numel() for p in net.parameters()) for net in self.nets]

    def networks(self) -> list[nn.Module]:
        return list(self.nets)

    def _check_scale_input(self, i: int, c_i: Tensor, t: Tensor) -> None:
        self.packing._check_scale(i)
        d = self.packing.scale_dim(i)
        if not isinstance(c_i, Tensor) or c_i.ndim != 2 or c_i.shape[1] != d:
            raise ValueError(f"c_i must have shape (n, {d}) for scale {i}, got {tuple(getattr(c_i, 'shape', ()))}")
        if not isinstance(t, Tensor) or t.shape != (c_i.shape[0],):
            raise ValueError(f"t must have shape ({c_i.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")

    def scale_eps(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        """Noise prediction of s_i in Haar coordinates.

        Parameters
        ----------
        i : scale, 1..n+1.
        c_i : (n, D_i), the moving coefficients [a_n, d_n, ..., d_i] at time t.
        t : (n,) times in R_i.

        Returns
        -------
        eps_hat : (n, D_i)
        """
        self._check_scale_input(i, c_i, t)
        co = self.process.scale_sde(i).coefficients(t, 1, like=c_i)
        rms = self.rms[: c_i.shape[1]].to(c_i)
        c_in = c_i / (co.alpha**2 * rms**2 + co.sigma2).sqrt()
        eps_image = self.nets[i - 1](self.packing.to_image(c_in, i), t)
        return self.packing.from_image(eps_image, i)

    def scale_score(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        """s_i(c_i, t) = -eps_hat / sigma(t), ``(n, D_i)``."""
        co = self.process.scale_sde(i).coefficients(t, 1, like=c_i)
        return prediction_to_score("epsilon", c_i, self.scale_eps(i, c_i, t), co.alpha, co.sigma2)

    def loss(
        self,
        x0: Tensor,
        *,
        weighting: Weighting = "likelihood",
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Per-scale denoising losses (eq. 10, module docstring), shape ``(n + 1,)``.

        1. c_0 = Haar(x_0); scale i uses its prefix c_{0,i}.
        2. t ~ U(R_i) per row and scale; c_t = alpha(t) c_0 + sigma(t) noise under scale i's SDE.
        3. ``weighting``: Lambda = G G^T (Theorem 1) or the simple eps loss.

        Parameters
        ----------
        x0 : (B, C, H, W) images.
        generator : draws t and the noise when they are not given.
        t : (n + 1, B), optional, row i-1 in R_i.
        noise : (n + 1, B, D), optional standard normal; scale i uses ``noise[i-1, :, :D_i]``.
        """
        check_images(self, x0)
        check_weighting(weighting)
        k, b, d = self.process.num_scales, x0.shape[0], self.packing.dim
        if t is not None and (not isinstance(t, Tensor) or t.shape != (k, b)):
            raise ValueError(f"t must have shape ({k}, {b}), got {tuple(getattr(t, 'shape', ()))}")
        if noise is not None and (not isinstance(noise, Tensor) or noise.shape != (k, b, d)):
            raise ValueError(f"noise must have shape ({k}, {b}, {d}), got {tuple(getattr(noise, 'shape', ()))}")
        c0 = self.packing.forward(x0)
        losses = []
        for i in range(1, k + 1):
            lo, hi = self.process.time_range(i)
            d_i = self.packing.scale_dim(i)
            t_i = lo + (hi - lo) * torch.rand(b, generator=generator, dtype=x0.dtype, device=x0.device) if t is None else t[i - 1]
            z = torch.randn((b, d_i), generator=generator, dtype=x0.dtype, device=x0.device) if noise is None else noise[i - 1, :, :d_i]
            eps_fn = lambda c, s, i=i: self.scale_eps(i, c, s)  # noqa: E731
            losses.append(denoising_loss(self.process.scale_sde(i), eps_fn, c0[:, :d_i], t_i, z, weighting))
        return torch.stack(losses)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int = 256,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        progress: bool = False,
        callback: Callback | None = None,
    ) -> Tensor:
        """Images ``(n, C, H, W)`` by the multiscale sampler of §3.3.2 (:func:`multiscale_sample`,
        whose ``callback`` receives the moving Haar coefficients)."""
        param = next(self.parameters())
        c = multiscale_sample(
            self, n, steps=steps, generator=generator, chunk_size=chunk_size, progress=progress, callback=callback,
            dtype=param.dtype, device=param.device,
        )
        return self.packing.inverse(c)


class UniformModel(ScoreModel, Pretrained):
    """The uniform baseline of §4.1: VP(beta_min, beta_max) with one eps-predicting UNet; a score ``model(x, t)``.

    Parameters
    ----------
    config : UniformConfig
    generator : seeds the initial weights.

    Attributes
    ----------
    default_weighting : ``"simple"``, the objective of the uniform baseline in §4.1.
    """

    model_kind = "uniform"
    config_class = UniformConfig
    default_weighting: Weighting = "simple"

    def __init__(self, config: UniformConfig, *, generator: torch.Generator | None = None) -> None:
        if not isinstance(config, UniformConfig):
            raise ValueError(f"config must be a UniformConfig, got {type(config).__name__}")
        super().__init__(VP(config.beta_min, config.beta_max, T=1.0, eps=config.eps), "epsilon")
        self.config = config
        self.net = EpsUNet(config.unet, config.image_size, config.channels, generator)
        self.event_shape = (config.channels, config.image_size, config.image_size)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def networks(self) -> list[nn.Module]:
        return [self.net]

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """eps_hat(x_t, t) for ``x: (n, C, H, W)``, ``t: (n,)``."""
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, self.event_shape))}), got {tuple(getattr(x, 'shape', ()))}")
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")
        co = self.sde.coefficients(t, x.ndim - 1, like=x)
        return self.net(x / (co.alpha**2 * self.config.data_rms**2 + co.sigma2).sqrt(), t)

    def loss(
        self,
        x0: Tensor,
        *,
        weighting: Weighting = "simple",
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Denoising loss with t ~ U(eps, 1) (the simple objective of §4.1 by default), shape ``(1,)``."""
        check_images(self, x0)
        check_weighting(weighting)
        b = x0.shape[0]
        if t is None:
            t = self.sde.eps + (self.sde.T - self.sde.eps) * torch.rand(b, generator=generator, dtype=x0.dtype, device=x0.device)
        elif not isinstance(t, Tensor) or t.shape != (b,):
            raise ValueError(f"t must have shape ({b},), got {tuple(getattr(t, 'shape', ()))}")
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif not isinstance(noise, Tensor) or noise.shape != x0.shape:
            raise ValueError(f"noise must have shape {tuple(x0.shape)}, got {tuple(getattr(noise, 'shape', ()))}")
        return denoising_loss(self.sde, self.predict, x0, t, noise, weighting)[None]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int = 256,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        progress: bool = False,
        callback: Callback | None = None,
    ) -> Tensor:
        """Images ``(n, C, H, W)``: Euler-Maruyama on the reverse VP SDE (:func:`smcdiff.sample`)."""
        param = next(self.parameters())
        return sample(
            self, self.sde, (n, *self.event_shape), steps=steps, generator=generator, chunk_size=chunk_size,
            progress=progress, callback=callback, dtype=param.dtype, device=param.device,
        )


def load_multiscale(path: str | Path, device: torch.device | str | None = None) -> MultiscaleModel | UniformModel:
    """Load a :class:`MultiscaleModel` or :class:`UniformModel` folder, or a shipped one by name
    (one of :data:`SHIPPED_MODELS`, under :data:`ASSET_DIR`)."""
    directory = ASSET_DIR / path if isinstance(path, str) and path in SHIPPED_MODELS else Path(path)
    if not (directory / CONFIG_NAME).is_file():
        raise ValueError(f"path must be one of {SHIPPED_MODELS} or a model folder holding {CONFIG_NAME}, got {path!r}")
    kind = read_config(directory, (MultiscaleModel.model_kind, UniformModel.model_kind)).kind
    cls = MultiscaleModel if kind == MultiscaleModel.model_kind else UniformModel
    return cls.from_pretrained(directory, device)
