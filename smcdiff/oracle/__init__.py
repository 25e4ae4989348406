"""Exact answers for testing samplers: closed-form Gaussian and Gaussian-mixture scores and posteriors
(:mod:`.gaussian`), the law of the discretised linear-Gaussian model and its Kalman-filter reference
(:mod:`.linear_gaussian`), and the seed slides' 2-d toy problems (:mod:`.toy`)."""

from .gaussian import (
    GaussianMixtureScore,
    GaussianScore,
    gaussian_mixture_posterior,
    gaussian_posterior,
    linear_gaussian_mixture_posterior,
    linear_gaussian_posterior,
)
from .linear_gaussian import discretised_law, em_kernel, kalman_smc_target
from .toy import ToyProblem, slides_gaussian, slides_mixture, toy_problems

__all__ = [
    "GaussianScore",
    "GaussianMixtureScore",
    "gaussian_posterior",
    "gaussian_mixture_posterior",
    "linear_gaussian_posterior",
    "linear_gaussian_mixture_posterior",
    "em_kernel",
    "discretised_law",
    "kalman_smc_target",
    "ToyProblem",
    "slides_gaussian",
    "slides_mixture",
    "toy_problems",
]
