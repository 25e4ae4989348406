"""Class-conditional generation from an unconditional model and a classifier (TDS's headline task).

:func:`generate` draws images of a chosen class: the twisted proposal conditions the unconditional diffusion
model on the :class:`~smcdiff.likelihoods.Classifier` likelihood p(c | x_0) (Wu et al. 2023). As M grows the
weighted particles converge to the discretised model's p(x_0) p(c | x_0) / p(c): the model's own images of
that class, as the classifier sees them. No mathematics here: the sampling is :func:`smcdiff.restore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .classifier import SHIPPED_CLASSIFIERS, load_digit_classifier
from .dynamics import Kernel
from .likelihoods import Classifier
from .options import RunOptions
from .proposals import Proposal
from .restore import DEFAULT_KERNEL, DEFAULT_PARTICLES, RestoreResult, restore
from .score import ScoreModel

__all__ = ["generate"]


def _classifier(model: object, classifier: object, device) -> torch.nn.Module:
    if classifier is None:
        if not isinstance(model, str) or model not in SHIPPED_CLASSIFIERS:
            raise ValueError(
                f"classifier is required for model={model!r}: the shipped classifiers go with the models {sorted(SHIPPED_CLASSIFIERS)}"
            )
        classifier = model
    if isinstance(classifier, str) and classifier in SHIPPED_CLASSIFIERS:
        return load_digit_classifier(device, SHIPPED_CLASSIFIERS[classifier])
    if isinstance(classifier, (str, Path)):
        return load_digit_classifier(device, classifier)
    if not callable(classifier):
        raise ValueError(f"classifier must be a shipped name, a folder or a callable x -> logits, got {type(classifier).__name__}")
    return classifier


def generate(
    label: int | Sequence[int],
    model: ScoreModel | str | Path = "digits",
    *,
    classifier: torch.nn.Module | str | Path | None = None,
    temperature: float = 1.0,
    particles: int = DEFAULT_PARTICLES,
    steps: int | None = None,
    kernel: Kernel = DEFAULT_KERNEL,
    proposal: Proposal | str | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    options: RunOptions | None = None,
) -> RestoreResult:
    """Draw images of class ``label`` from an unconditional model guided by a classifier (twisted SMC).

    Parameters
    ----------
    label : a class (one problem) or a sequence of classes (one problem each), in 0..classes - 1.
    model : as in :func:`smcdiff.restore` (default: the shipped ``"digits"`` model).
    classifier : a callable ``x -> logits (n, classes)`` differentiable in x, a folder written by
        :func:`smcdiff.classifier.save_digit_classifier`, or a shipped name; default: the classifier shipped
        with ``model`` (``"digits"``; ``"mnist"`` once its weights ship).
    temperature : the classifier's logits are divided by it (above 1: weaker conditioning).
    particles, steps, kernel, generator, device, options : as in :func:`smcdiff.restore`; by default
        P = 4 independent runs of ``particles`` each (``options.populations``).
    proposal : the twisted proposal (default) or a :class:`~smcdiff.proposals.Twisted` with its options.

    Returns
    -------
    RestoreResult whose ``y`` holds the labels ``(B,)`` and ``operator`` the :class:`Classifier` likelihood;
    ``draw(k)`` gives k equally weighted images per label.
    """
    labels = torch.as_tensor([label] if isinstance(label, int) and not isinstance(label, bool) else list(label))
    if labels.ndim != 1 or labels.numel() == 0 or labels.dtype != torch.int64:
        raise ValueError(f"label must be a class index or a non-empty sequence of them, got {label!r}")
    net = _classifier(model, classifier, device)
    likelihood = Classifier(net, temperature=temperature)
    probe = next(iter(net.parameters()), None) if isinstance(net, torch.nn.Module) else None
    classes = getattr(getattr(net, "config", None), "num_classes", None)
    if classes is not None and bool(((labels < 0) | (labels >= classes)).any()):
        raise ValueError(f"label must lie in 0..{classes - 1}, got {labels.tolist()}")
    if probe is not None:
        labels = labels.to(probe.device)
    return restore(model, labels, likelihood, particles=particles, steps=steps, kernel=kernel, proposal=proposal,
                   generator=generator, device=device, options=options)
