"""Training of the in-house models: the multiscale and uniform models (§3.3.1, §4.1) and the CDE / CDiffE /
CMDE estimators (§3.4), each a loss drawn per step and handed to the shared loop :func:`smcdiff.training.fit`.

The two trainers keep their own defaults: the multiscale comparison trains under a wall-clock (or CPU)
budget with a constant learning rate after the warm-up and resumable state; the estimators train for
a fixed number of steps with a cosine decay and hand every checkpoint to the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..training import Clock, TrainResult, fit
from .conditional_losses import score_matching_loss
from .estimator import ConditionalEstimator
from .models import MultiscaleModel, UniformModel, Weighting, check_images, check_weighting
from .observation import observe
from .process import check_positive_int

__all__ = ["train_multiscale", "train_conditional"]


def _draw_rows(images: Tensor, batch_size: int, generator: torch.Generator | None) -> Tensor:
    """``batch_size`` rows of ``images`` drawn uniformly with replacement."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator, device=gen_device)
    return images[idx.to(images.device)]


def train_multiscale(
    model: MultiscaleModel | UniformModel,
    images: Tensor,
    *,
    steps: int | None = None,
    max_seconds: float | None = None,
    weighting: Weighting | None = None,
    batch_size: int = 128,
    lr: float = 2e-3,
    warmup: int = 200,
    weight_decay: float = 1e-4,
    ema_decay: float = 0.999,
    generator: torch.Generator | None = None,
    progress: bool = True,
    state_dir: str | Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    clock: Clock = "wall",
) -> TrainResult:
    """Train a :class:`MultiscaleModel` (all scales, each on its own loss) or a :class:`UniformModel`.

    Each step draws one batch with replacement from ``images`` and, for every network, its own
    times and noise (:meth:`MultiscaleModel.loss`); the networks have disjoint parameters, so one
    AdamW step on the summed loss, with gradients clipped to norm 1 per network, trains each of them
    separately (§3.3.1). The learning rate warms up linearly and then stays constant; an exponential
    moving average of the weights (decay ``min(ema_decay, (1 + k)/(10 + k))``) is returned.

    Parameters
    ----------
    model : trained in place.
    images : (N, C, H, W).
    steps, max_seconds : stop at whichever comes first (at least one must be given). Seconds count
        the training loop only, not checkpoint writing, and carry over when resuming.
    clock : ``"wall"`` (``time.perf_counter``) or ``"process"`` (``time.process_time``, the CPU time
        of this process: with one thread, the wall-clock time the loop would take on an idle core,
        which keeps budgets comparable on a shared machine).
    weighting : ``"likelihood"`` (Theorem 1) or ``"simple"``; None = ``model.default_weighting``.
    generator : draws batches, times and noise; its state is part of the checkpoint.
    state_dir : folder for resumable checkpoints (``state.safetensors`` + ``state.json``, no pickle),
        written every ``checkpoint_every`` steps and at the end.
    resume : continue from ``state_dir``; reproduces the uninterrupted run when stopping by ``steps``.

    Returns
    -------
    TrainResult with the EMA model in eval mode.
    """
    check_images(model, images)
    weighting = model.default_weighting if weighting is None else weighting
    check_weighting(weighting)
    check_positive_int("batch_size", batch_size)
    images = images.to(next(model.parameters()).device)

    def loss_fn(step: int) -> Tensor:
        return model.loss(_draw_rows(images, batch_size, generator), weighting=weighting, generator=generator)

    return fit(
        model, loss_fn, steps=steps, max_seconds=max_seconds, lr=lr, warmup=warmup, schedule="constant",
        weight_decay=weight_decay, ema_decay=ema_decay, clipped=model.networks(), generator=generator,
        progress=progress, desc=f"train {model.model_kind}", state_dir=state_dir, resume=resume,
        config={"kind": model.model_kind, **model.config.to_dict()}, meta={"weighting": weighting},
        checkpoint_every=checkpoint_every, clock=clock,
    )


def train_conditional(
    estimator: ConditionalEstimator,
    images: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    warmup: int = 200,
    weight_decay: float = 1e-4,
    ema_decay: float = 0.999,
    max_seconds: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint: Callable[[ConditionalEstimator, int, float], None] | None = None,
    checkpoint_every: int = 1000,
) -> TrainResult:
    """Minimise :func:`score_matching_loss` on ``images`` with AdamW and an EMA of the weights.

    Each step draws a batch with replacement, an observation of it by the config's operator
    (:func:`observe`, a fresh random hole per image for inpainting), the times and the noise, all
    from ``generator``. The learning rate warms up linearly over ``warmup`` steps and then follows a
    cosine decay to 0 at ``steps``; gradients are clipped to norm 1. The EMA has decay
    ``min(ema_decay, (1 + k) / (10 + k))`` at step k (the usual warm-up, so that early weights are
    forgotten quickly).

    Parameters
    ----------
    estimator : ConditionalEstimator, trained in place.
    images : (N, C, H, W) training images.
    steps : optimiser steps.
    max_seconds : stop early after this many seconds of training.
    checkpoint : called as ``checkpoint(ema_model, step, smoothed_loss)`` every ``checkpoint_every``
        steps and at the end.

    Returns
    -------
    TrainResult with the EMA model (eval mode).
    """
    cfg = estimator.config
    if images.ndim != 4 or tuple(images.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
        raise ValueError(
            f"images must have shape (N, {cfg.channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(images.shape)}"
        )
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    images = images.to(next(estimator.parameters()).device)

    def loss_fn(step: int) -> Tensor:
        x0 = _draw_rows(images, batch_size, generator)
        obs = observe(cfg, x0, generator=generator)
        return score_matching_loss(estimator, x0, obs.y, obs.aux, generator=generator)

    return fit(
        estimator, loss_fn, steps=steps, max_seconds=max_seconds, lr=lr, warmup=warmup, schedule="cosine",
        weight_decay=weight_decay, ema_decay=ema_decay, clipped=[estimator], generator=generator,
        progress=progress, desc=f"train {cfg.estimator}/{cfg.task}", checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
    )
