r"""Conditional sampling of p(x | y) for y = A x + sigma_y eps, or any likelihood, by SMC: the public entry point.

:func:`smc_sample` resolves the observation (a bool mask, the shorthand of SMCDiff's inpainting, an operator of
:mod:`smcdiff.operators`, or a :class:`~smcdiff.likelihoods.Likelihood`, which only the twisted proposal takes),
checks every argument once, builds the particle model named by ``proposal`` (:mod:`smcdiff.proposals`) and runs
the one particle loop of :mod:`smcdiff.feynman_kac`.

- ``proposal="bootstrap"``: SMCDiff (Trippe et al. 2022, the seed slides): a forward-noised trajectory
  of the observed coefficients, the reverse kernel elsewhere, weights from the kernel's law of the
  observed coefficients. The weighted particles converge, as M grows, to the posterior of the
  discretised model given the sampled trajectory of y.
- ``proposal="mcgdiff"``: the MCGdiff-style locally optimal proposal (Cardoso et al. 2024) for any
  operator and noise level; converges to the posterior of the discretised model given y.
- ``proposal="twisted"``: TDS (Wu et al. 2023): every move shifted by the gradient of a Tweedie
  approximation of log p(y | x_t), the weights correcting the approximation; the same limit as
  ``"mcgdiff"``, at the price of a backward pass through the score per step.

All approach p(x | y) as the steps shrink with an exact score; ``log_evidence`` estimates the likelihood
of what was conditioned on (the sampled trajectory for ``"bootstrap"``, y otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dynamics import DEFAULT_STEPS, Kernel, check_generator, check_kernel, check_noise_std, check_score, check_steps, resolve_grid
from .feynman_kac import Problem, StepInfo, WeightedSamples, run_particles
from .likelihoods import GaussianLinear, Likelihood
from .operators import Mask, Operator, as_operator
from .options import RunOptions, check_options
from .proposals import Proposal, ProposalName, resolve_proposal
from .score import ScoreFn
from .sde import SDE
from .threads import torch_threads

__all__ = [
    "smc_sample", "WeightedSamples", "StepInfo", "build_problem", "check_sde", "check_noise_std", "repeat_rows",
    "linear_observation", "check_proposal_observation",
]


def _check_y(y: Tensor) -> None:
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ValueError("y must be a floating-point tensor of shape (B, *observation_shape)")
    if y.ndim < 2:
        raise ValueError(f"y must have shape (B, *observation_shape), got {tuple(y.shape)}")


def check_sde(sde: SDE, operator: Operator, grid: Tensor) -> None:
    """Raise ``ValueError`` if the SDE's reverse kernel is not diagonal in the operator's singular basis.

    A mask (V = I) takes any per-coordinate schedule. Any other operator needs the schedule to be the
    same for every coordinate (checked on the grid), so that the kernel stays isotropic under V.
    """
    if not isinstance(sde, SDE):
        raise ValueError(f"sde must be an smcdiff SDE, got {type(sde).__name__}")
    sde.check_event_shape(tuple(operator.in_shape), "x (the operator's input)")
    if operator.coordinatewise or sde.param_shape == torch.Size([]):
        return
    c = sde.coefficients(grid, len(operator.in_shape))
    for name, v in (("alpha", c.alpha), ("sigma^2", c.sigma2), ("g^2", c.g2)):
        flat = v.reshape(v.shape[0], -1)
        if not torch.allclose(flat, flat[:, :1].expand_as(flat), rtol=1e-6, atol=1e-12):
            raise ValueError(
                f"sde: {sde!r} has a per-coordinate schedule ({name} differs between coordinates), which is not "
                f"constant on the singular basis of {operator!r}; only a Mask observation supports non-uniform SDEs"
            )


def linear_observation(observation: Tensor | Operator | Likelihood, noise_std: float) -> tuple[Tensor | Operator | Likelihood, float]:
    """A :class:`~smcdiff.likelihoods.GaussianLinear` observation unwrapped into its operator and noise level (so
    that it samples exactly as the pair does); anything else as it is. A ``ValueError`` if ``noise_std`` is also
    given and differs from the likelihood's, or is given with another likelihood (which defines its own noise)."""
    if isinstance(observation, GaussianLinear):
        if noise_std not in (0.0, observation.noise_std):
            raise ValueError(f"noise_std={noise_std:g} contradicts the observation's own noise_std={observation.noise_std:g}; give one")
        return observation.operator, observation.noise_std
    if isinstance(observation, Likelihood) and noise_std != 0:
        raise ValueError("noise_std belongs to the likelihood's own definition; leave it 0 with a Likelihood")
    return observation, noise_std


def _likelihood_problem(score, sde, y, likelihood: Likelihood, *, particles, steps, grid, kernel, chunk_size) -> Problem:
    """The :class:`Problem` of a non-linear likelihood: a mask that observes nothing on x's shape, zeros as y."""
    likelihood.check_y(y)
    event_shape = likelihood.event_shape or getattr(score, "event_shape", None)
    if event_shape is None:
        raise ValueError(
            "a likelihood needs the shape of one x: give the likelihood event_shape=(...) or use a score with .event_shape"
        )
    dtype = y.dtype if y.is_floating_point() else torch.get_default_dtype()
    zeros = torch.zeros((y.shape[0], *event_shape), dtype=dtype, device=y.device)
    op = Mask(torch.zeros(tuple(event_shape), dtype=torch.bool, device=y.device))
    grid = resolve_grid(sde, steps, grid, DEFAULT_STEPS)
    check_sde(sde, op, grid)
    return Problem(score, sde, op, zeros, 0.0, particles, grid.to(y.device), kernel, chunk_size, likelihood, y)


def build_problem(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    observation: Tensor | Operator | Likelihood,
    *,
    noise_std: float = 0.0,
    particles: int,
    steps: int | None = None,
    grid: Tensor | None = None,
    kernel: Kernel = "euler",
    chunk_size: int | None = None,
) -> Problem:
    """Check every argument of a conditional sampler once and resolve them into a :class:`Problem`."""
    check_score(score)
    check_steps(steps)
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise ValueError(f"particles must be a positive integer, got {particles!r}")
    check_kernel(kernel)
    noise_std = check_noise_std(noise_std)
    if not isinstance(sde, SDE):
        raise ValueError(f"sde must be an smcdiff SDE, got {type(sde).__name__}")
    observation, noise_std = linear_observation(observation, noise_std)
    if isinstance(observation, Likelihood):
        return _likelihood_problem(score, sde, y, observation, particles=particles, steps=steps, grid=grid,
                                   kernel=kernel, chunk_size=chunk_size)
    _check_y(y)
    event_shape = getattr(score, "event_shape", None)
    if isinstance(observation, Tensor) or event_shape is None:
        event_shape = None  # a mask has y's shape; otherwise read the input shape off the operator
    op = as_operator(observation, y, None if event_shape is None else tuple(event_shape))
    observed = torch.broadcast_to(op.observed.to(y.device), (y.shape[0], *op.coef_shape))
    ybar = op.coefficients(y)
    if not torch.isfinite(torch.where(observed, ybar, torch.zeros_like(ybar))).all():
        raise ValueError("y must be finite where it is observed")
    grid = resolve_grid(sde, steps, grid, DEFAULT_STEPS)
    check_sde(sde, op, grid)
    return Problem(score, sde, op, y, noise_std, particles, grid.to(y.device), kernel, chunk_size)


def repeat_rows(y: Tensor, observation: Tensor | Operator | Likelihood, repeats: int) -> tuple[Tensor, Tensor | Operator | Likelihood]:
    """``y`` and its observation with every row repeated ``repeats`` times in place (row b becomes rows
    ``b * repeats .. b * repeats + repeats - 1``): per-row masks are repeated with their rows; an operator
    shared by all rows stays as it is."""
    if isinstance(observation, Likelihood):
        observation.check_y(y)
        return y.repeat_interleave(repeats, dim=0), observation
    _check_y(y)
    if isinstance(observation, Tensor):
        if observation.dtype != torch.bool:
            raise ValueError("mask must be a bool tensor broadcastable to y's shape (True = observed), or an Operator")
        observation = as_operator(observation, y)
    if isinstance(observation, Mask) and observation.per_row:
        observation = Mask(observation.mask.repeat_interleave(repeats, dim=0), per_row=True)
    return y.repeat_interleave(repeats, dim=0), observation


def check_proposal_observation(
    proposal: Proposal | ProposalName | None, observation: Tensor | Operator | Likelihood, noise_std: float
) -> Proposal:
    """The proposal (resolved, default included) if it can condition on ``observation``: a non-linear likelihood
    needs the twisted proposal (the default for one); the others need y = A x + noise."""
    if isinstance(observation, Likelihood):
        proposal = resolve_proposal("twisted" if proposal is None else proposal, 0.0)
        if not proposal.any_likelihood:
            raise ValueError(
                f"proposal={proposal.name!r} needs a linear-Gaussian observation (an operator or a mask with noise_std); "
                f"{observation!r} is not one: use proposal='twisted', which takes any differentiable likelihood"
            )
        return proposal
    return resolve_proposal(proposal, noise_std)


@torch.no_grad()
def smc_sample(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    observation: Tensor | Operator,
    *,
    noise_std: float = 0.0,
    particles: int,
    steps: int | None = None,
    grid: Tensor | None = None,
    proposal: Proposal | ProposalName | None = None,
    kernel: Kernel = "euler",
    generator: torch.Generator | None = None,
    denoise_last: bool = False,
    options: RunOptions | None = None,
) -> WeightedSamples | None:
    """Sample p(x | y) for y = A x + noise_std * eps with SMC on an unconditional score.

    Parameters
    ----------
    score : callable ``score(x, t)``, an unconditional score for ``sde``.
    sde : SDE (uniform; or non-uniform with a mask observation).
    y : (B, *observation_shape) observations, one row per problem. For a mask, y has the data's shape
        and values where the mask is False are ignored.
    observation : a bool mask broadcastable to ``y`` (True = observed; rows may differ), an operator
        of :mod:`smcdiff.operators` (``Mask``, ``Downsample``, ``Blur``, ``Grayscale``, ``Dense``, ...), or a
        :class:`~smcdiff.likelihoods.Likelihood` (log p(y | x_0): a classifier, a non-linear measurement; then
        ``y`` is what it conditions on, e.g. labels ``(B,)``, and the proposal must be ``"twisted"``, its default).
    noise_std : sigma_y >= 0, the standard deviation of the observation noise.
    particles : M, particles per observation (per independent run with ``options.populations``).
    steps : N, reverse steps on ``sde.time_grid(N)`` (default 500).
    grid : explicit decreasing times ``(N + 1,)`` in ``[eps, T]`` instead of ``sde.time_grid(steps)``.
    proposal : a name (``"bootstrap"``, ``"mcgdiff"``, ``"twisted"``) or an object of :mod:`smcdiff.proposals`
        carrying its options (``Twisted(twist_variance=4.0)``, ``Bootstrap(corrector_steps=1)``). Default:
        the bootstrap when ``noise_std == 0``, the twisted proposal otherwise (``"mcgdiff"`` for a score without
        autograd).
    kernel : ``"euler"`` (Euler-Maruyama) or ``"ancestral"`` (exact in time given Tweedie's denoiser);
        every proposal uses the kernel's own law, so the limit in M is the discretised model's posterior.
    generator : torch.Generator, optional; the only source of randomness.
    denoise_last : Tweedie-denoise the particles at the last grid time.
    options : :class:`smcdiff.RunOptions`: resampling scheme and ESS threshold, chunking, progress bar,
        callback, placement over processes, independent runs (``populations``), CPU threads.

    Returns
    -------
    WeightedSamples
        ``particles (B, P * M, *event_shape)`` for P = ``options.populations`` (default 1); with a noiseless observation
        A x equals y exactly on the observed part. ``lineages`` shows how many distinct ancestors the final
        particles have. A sharded placement returns it where its ``gather`` says and None on the other processes.
    """
    options = check_options(options)
    noise_std = check_noise_std(noise_std)
    observation, noise_std = linear_observation(observation, noise_std)
    proposal = check_proposal_observation(proposal, observation, noise_std)
    check_generator(generator)
    placement = options.where
    runs = options.runs()
    if runs > 1:
        y, observation = repeat_rows(y, observation, runs)
    problem = build_problem(
        score, sde, y, observation, noise_std=noise_std, particles=placement.local_particles(particles), steps=steps,
        grid=grid, kernel=kernel, chunk_size=options.chunk_size,
    )
    model = proposal.build(problem)
    with torch_threads(options.threads):
        out = run_particles(
            model, resampling=options.resampling, ess_threshold=options.ess_threshold, generator=generator,
            denoise_last=denoise_last, progress=options.progress, desc=f"smc ({proposal.name})",
            callback=options.callback, placement=placement,
        )
    return None if out is None else out.pool(runs)
