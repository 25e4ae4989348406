r"""Conditional score estimators of "Non-Uniform Diffusion Models" §3.4: CDE, CDiffE and CMDE.

The target is the conditional score grad_x log p(x_t | y) that drives the conditional reverse SDE
(eq. 11). Three estimators share one backbone (a diffusers ``UNet2DModel`` whose input is the
diffused target concatenated with the condition along the channels, App. B) and the VE SDE of §4.2,
sigma(t) = sigma_min (sigma_max / sigma_min)^t:

CDE (eq. 12)
    s_theta(x_t, y, t) learns grad_{x_t} log p(x_t | x_0); by Theorem 2 its minimiser is
    grad_{x_t} log p(x_t | y). The network sees ``[x_t, y, aux]`` and returns C_x channels.
CDiffE (eq. 13)
    s_theta(z_t, t) learns the joint score of z_t = (x_t, y_t), x and y diffused by the same VE SDE;
    grad_{x_t} log p(x_t | y) is approximated by the x-block of the joint score at
    (x_t, y^_t), y^_t ~ p(y_t | y) (§3.4.2). The network sees ``[x_t, y_t, aux]`` and returns
    C_x + C_y channels.
CMDE (eq. 14)
    as CDiffE, but y diffuses more slowly, sigma^y(t) = sigma_min (sigma^y_max / sigma_min)^t with
    sigma^y_max < sigma_max: the smaller sigma^y_max, the closer p(x_t | y_t) is to p(x_t | y)
    (Theorem 4).

The public names of the conditional side of :mod:`smcdiff.msdiff`, each defined in the module that
holds its concern:

- :mod:`~smcdiff.msdiff.conditional_config`: :class:`ConditionalConfig`;
- :mod:`~smcdiff.msdiff.observation`: the operators ("tasks") and the :class:`Observation` the
  estimators take (:func:`average_pool`, :func:`condition`, :func:`observe`);
- :mod:`~smcdiff.msdiff.conditional_losses`: the likelihood-weighted losses (eq. 12-14),
  :func:`conditional_score` (§3.4.2) and the estimator protocol that exact oracles follow too;
- :mod:`~smcdiff.msdiff.estimator`: :class:`ConditionalEstimator` and :func:`load_conditional`
  (the shipped digits models by name, :data:`SHIPPED`, under :data:`ASSET_DIR`);
- :mod:`~smcdiff.msdiff.trainers`: :func:`train` (on :func:`smcdiff.training.fit`).

The sampler with a trained estimator is :func:`smcdiff.baselines.sample_conditional`.
"""

from __future__ import annotations

from ..training import TrainResult
from .conditional_config import ConditionalConfig, Estimator, Task
from .conditional_losses import (
    conditional_score,
    joint_ve,
    likelihood_weighting,
    score_matching_loss,
    weighted_score_loss,
)
from .estimator import ASSET_DIR, SHIPPED, ConditionalEstimator, load_conditional
from .observation import Observation, average_pool, condition, observe
from .trainers import train_conditional as train

__all__ = [
    "Estimator",
    "Task",
    "ConditionalConfig",
    "Observation",
    "ConditionalEstimator",
    "TrainResult",
    "average_pool",
    "condition",
    "observe",
    "joint_ve",
    "likelihood_weighting",
    "weighted_score_loss",
    "score_matching_loss",
    "conditional_score",
    "train",
    "load_conditional",
    "SHIPPED",
    "ASSET_DIR",
]
