"""The Gaussian-mixture benchmark of MCGdiff (Cardoso et al. 2024, ICLR, §5 "Gaussian mixture").

    python benchmarks/bench_linear_gmm.py [--threads 1] [--quick] [--dims 8x1 80 ...] [--seeds S] [--steps 100 200]

Prior: 25 unit-covariance Gaussians in d_x dimensions with means (8i, 8j, 8i, 8j, ...), i, j in {-2..2},
and weights w_k proportional to eps_k^2, eps_k ~ N(0, 1) (a Dirichlet(1/2, ..., 1/2) draw, as in the
authors' script ``scripts/viz_gaussian.py`` of gabrielvc/mcg_diff), fixed seed 0. Score: the exact
``GaussianMixtureScore`` under ``VP()``.

Observation, one per seed (``--operator paper``, the default, as in the authors' script): A = U diag(s) V_{:d_y}
where U, V are the singular vectors of a (d_y, d_x) matrix of N(0, 1) entries and s are d_y sorted U(0, 1)
draws; sigma_y = u max(s), u ~ U(0, 1); y = A x* + sigma_y eps with x* drawn from the prior.
``--operator gaussian`` keeps the N(0, 1) matrix itself (same rule for sigma_y). Each seed has its own A,
so seeds are separate calls. A noiseless variant (sigma_y = 0, same A and x*) runs MCGdiff and the
bootstrap proposal (SMCDiff), which refuses sigma_y > 0.

Metric: sliced Wasserstein SW_2 = (mean over L random directions of W_2^2)^(1/2) between SMC's weighted
particles and M exact posterior samples (``linear_gaussian_mixture_posterior``). The weighted 1-d W_2 is
exact (quantile functions of the weighted measure; no resampling). Floor: the same distance between two
independent sets of M exact samples (same directions). Reported: mean +- standard error over seeds and
the ratio of the means SMC / floor. Target (the issue): SMC within 1.5x the floor at d_x = 8 and 80, M = 1,000.

Diagnostics, to tell mode weights from within-mode spread. A particle's component is argmax_k p(k | x)
(the prior responsibilities, which equal the posterior's since y is independent of k given x).
- TV modes: total variation between the mass of each component under SMC and the exact posterior
  weights (the floor column: an exact sample's empirical component frequencies).
- SW fixed: SW after reweighting SMC's particles so that each component carries its exact posterior
  weight. Near the floor: the error is in the mode weights; near SW(SMC): within the modes. (It can
  fall below the floor, whose exact samples carry multinomial noise in their mode frequencies.)
- final ESS, and lineages at t_N: distinct ancestors at the first step of the final particles
  (``distinct_final``): few lineages mean the mode weights rest on few independent draws.

Cost: ``GaussianMixtureScore`` costs O(K n d^2) per call (3.4 s for n = 1,000 at d = 800 on one core,
so ~6 min per run of 100 steps). For d_x > 100, ``--score auto`` uses the same exact score written for
unit covariances, O(K n d) (``IsotropicMixtureScore`` below, checked against ``GaussianMixtureScore``
at start); ``--score mixture`` forces the generic one.

Bound (``--variants exact-twist``): the twisted proposal with the mixture's exact twist log p(y | x_t) in
place of the Tweedie-Gaussian one (no denoiser can give it; ``ExactTwistModel`` below, registered as a
proposal). What remains with it is the discretised kernel's weight variance and the discretised model's
bias, which no better twist removes.

``--repeats R`` runs R independent SMC runs (and R pairs of exact reference sets) per observation seed
and averages each seed's metrics over them, which lowers the variance of the ratio for the same seeds;
``--verbose`` then also prints ``tv_pooled``, the TV of the mode masses averaged over the R runs (the
discretised target's bias plus a Monte Carlo floor of about TV / sqrt(R)). ``--seed-list`` picks seeds.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
import time

import torch
from torch import Tensor, nn

from smcdiff import GaussianMixtureScore, RunOptions, VP, smc_sample
from smcdiff.oracle.gaussian import linear_gaussian_mixture_posterior
from smcdiff.operators import Dense
from smcdiff.proposals import PROPOSALS, Twisted, TwistedModel
from smcdiff.sde import SDE

K_SIDE = (-2, -1, 0, 1, 2)
DEFAULT_SEEDS = {8: 20, 80: 8, 800: 3}
VARIANTS = {  # name: (proposal, noisy, twist_variance); "0" = noiseless (sigma_y = 0)
    "mcgdiff": ("mcgdiff", True, None), "mcgdiff0": ("mcgdiff", False, None), "bootstrap0": ("bootstrap", False, None),
    "twisted": ("twisted", True, 1.0), "twisted0": ("twisted", False, 1.0),
    "twisted-inf": ("twisted", True, math.inf), "twisted-inf0": ("twisted", False, math.inf),
    "twisted-prior": ("twisted", True, "prior"), "twisted-prior0": ("twisted", False, "prior"),
    "exact-twist": ("exact-twist", True, None),
}


def prior_coefficient_variance(weights: Tensor, means: Tensor, covs: Tensor, op: Dense) -> Tensor:
    """The prior's variance of each coefficient V^T x of the operator (``twisted-prior``): diag(V^T Cov V)."""
    mean = weights @ means
    centred = means - mean
    cov = (weights[:, None, None] * covs).sum(0) + centred.T @ (weights[:, None] * centred)
    root = torch.linalg.cholesky(cov)
    return (op.Vt(root.T) ** 2).sum(0)  # row j of root.T is column j of root


# ---- problem -----------------------------------------------------------------------------------------
def prior(d: int) -> tuple[Tensor, Tensor, Tensor]:
    """weights (25,), means (25, d), covs (25, d, d) of the 25-component grid mixture."""
    if d % 2:
        raise ValueError(f"d_x must be even, got {d}")
    means = torch.tensor([[8.0 * i, 8.0 * j] * (d // 2) for i in K_SIDE for j in K_SIDE], dtype=torch.float64)
    eps = torch.randn(len(means), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = eps**2 / (eps**2).sum()
    covs = torch.eye(d, dtype=torch.float64).expand(len(means), d, d).clone()
    return weights, means, covs


def observation(weights: Tensor, means: Tensor, d_y: int, seed: int, operator: str) -> tuple[Tensor, Tensor, float]:
    """(A (d_y, d_x), A x* (d_y,), sigma_y) for one seed; x* is drawn from the prior."""
    g = torch.Generator().manual_seed(1000 + seed)
    d_x = means.shape[1]
    a = torch.randn(d_y, d_x, generator=g, dtype=torch.float64)
    if operator == "paper":
        u, _, vh = torch.linalg.svd(a, full_matrices=False)
        s = torch.rand(d_y, generator=g, dtype=torch.float64).sort(descending=True).values
        a = u @ torch.diag(s) @ vh
    s_max = torch.linalg.matrix_norm(a, ord=2).item()
    sigma_y = torch.rand((), generator=g, dtype=torch.float64).item() * s_max
    k = torch.multinomial(weights, 1, generator=g).item()
    x_star = means[k] + torch.randn(d_x, generator=g, dtype=torch.float64)
    return a, a @ x_star, sigma_y


def exact_samples(post_w: Tensor, post_means: Tensor, post_covs: Tensor, n: int, g: torch.Generator) -> Tensor:
    """n draws ``(n, d)`` from sum_k post_w[k] N(post_means[k], post_covs[k]) (covariances may be singular)."""
    evals, evecs = torch.linalg.eigh(post_covs[:1] if _all_equal(post_covs) else post_covs)
    root = evecs * evals.clamp_min(0).sqrt()[..., None, :]  # (K or 1, d, d): root root^T = cov
    k = torch.multinomial(post_w, n, replacement=True, generator=g)
    z = torch.randn(n, post_means.shape[1], generator=g, dtype=torch.float64)
    noise = z @ root[0].T if root.shape[0] == 1 else torch.einsum("nij,nj->ni", root[k], z)
    return post_means[k] + noise


def _all_equal(covs: Tensor) -> bool:
    return bool(torch.allclose(covs, covs[:1].expand_as(covs), rtol=0, atol=1e-10))


class IsotropicMixtureScore(nn.Module):
    """Exact score of sum_k w_k N(m_k, I) diffused by a uniform ``sde``, O(K n d) per call.

    x_t ~ sum_k w_k N(alpha m_k, v I) with v = alpha^2 + sigma^2, so the score is
    -(x - alpha sum_k r_k(x) m_k) / v with r_k the responsibilities.
    """

    def __init__(self, weights: Tensor, means: Tensor, sde: SDE) -> None:
        super().__init__()
        self.sde, self.dim = sde, means.shape[1]
        self.register_buffer("log_weights", (weights / weights.sum()).log())
        self.register_buffer("means", means)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        c = self.sde.coefficients(t, 1, like=x)
        alpha, var = c.alpha, c.alpha**2 + c.sigma2  # (n, 1)
        m = self.means.to(x)
        sq = (x**2).sum(1, keepdim=True) - 2 * alpha * x @ m.T + alpha**2 * (m**2).sum(1)[None]  # (n, K)
        resp = torch.softmax(self.log_weights.to(x)[None] - 0.5 * sq / var, dim=1)
        return -(x - alpha * resp @ m) / var


def make_score(weights: Tensor, means: Tensor, covs: Tensor, sde: SDE, kind: str) -> nn.Module:
    d = means.shape[1]
    if kind == "mixture" or (kind == "auto" and d <= 100):
        return GaussianMixtureScore(weights, means, covs, sde)
    iso = IsotropicMixtureScore(weights, means, sde)
    ref = GaussianMixtureScore(weights, means, covs, sde)
    g = torch.Generator().manual_seed(7)
    x = 10 * torch.randn(16, d, generator=g, dtype=torch.float64)
    t = torch.rand(16, generator=g, dtype=torch.float64) * (1 - 1e-3) + 1e-3
    err = ((iso(x, t) - ref(x, t)).abs().max() / ref(x, t).abs().max()).item()
    if err > 1e-8:
        raise RuntimeError(f"IsotropicMixtureScore differs from GaussianMixtureScore by {err:.2e} (relative)")
    print(f"(d_x = {d}: IsotropicMixtureScore used; relative difference to GaussianMixtureScore {err:.1e})")
    return iso


class ExactTwistModel(TwistedModel):
    """The twisted proposal with the mixture's exact twist log p(y | x_t) (a bound: no denoiser gives it).

    Given component k of the unit-covariance prior, x_0 | x_t ~ N(m_k + alpha / v (x_t - alpha m_k), sigma^2 / v I)
    with v = alpha^2 + sigma^2, so y = A x_0 + sigma_y eps given x_t is a 25-component Gaussian mixture with
    covariance sigma^2 / v A A^T + sigma_y^2 I. Every coordinate moves by the twist's gradient (the
    default move's Gaussian linearisation is not this twist)."""

    linearised_observed = False

    def __init__(self, problem, a: Tensor, weights: Tensor, means: Tensor, **options) -> None:
        super().__init__(problem, **options)
        self.a, self.weights, self.means = a, weights, means


@dataclass(frozen=True, eq=False)
class ExactTwist(Twisted):
    """The proposal object of :class:`ExactTwistModel`: the twisted proposal's options plus the mixture."""

    a: Tensor | None = None
    weights: Tensor | None = None
    means: Tensor | None = None

    name = "exact-twist"

    def build(self, problem) -> ExactTwistModel:
        return ExactTwistModel(problem, self.a, self.weights, self.means, twist_variance=self.twist_variance,
                               corrector_steps=self.corrector_steps, corrector_size=self.corrector_size)

    def log_twist(self, x: Tensor, t: Tensor, score: Tensor, rows: Tensor) -> Tensor:
        pb = self.problem
        alpha, sigma2 = pb.sde.alpha(t[:1]).double(), pb.sde.sigma(t[:1]).double() ** 2
        v = alpha**2 + sigma2
        resid = x.double()[:, None, :] - alpha * self.means  # (n, K, d)
        log_resp = torch.log_softmax(self.weights.log() - 0.5 * (resid**2).sum(-1) / v, dim=-1)
        mean_y = (self.means + alpha / v * resid) @ self.a.T  # (n, K, d_y)
        cov = sigma2 / v * self.a @ self.a.T + pb.noise_std**2 * torch.eye(len(self.a), dtype=torch.float64)
        log_lik = torch.distributions.MultivariateNormal(mean_y, covariance_matrix=cov).log_prob(pb.y[rows].double()[:, None])
        return torch.logsumexp(log_resp + log_lik, dim=-1)


# ---- metrics -------------------------------------------------------------------------------------------
def sliced_w2(x: Tensor, x_weights: Tensor | None, ref: Tensor, directions: Tensor) -> float:
    """SW_2 between ``x: (n, d)`` with normalised ``x_weights: (n,)`` (None: uniform) and uniform ``ref: (m, d)``.

    Per direction the weighted W_2^2 is the integral over u in (0, 1) of (F_x^{-1}(u) - F_ref^{-1}(u))^2,
    computed exactly on the union of both CDFs' breakpoints.
    """
    px, pr = (x @ directions).T, (ref @ directions).T  # (L, n), (L, m)
    n, m = px.shape[1], pr.shape[1]
    wx = torch.full((n,), 1.0 / n, dtype=x.dtype) if x_weights is None else x_weights.to(x.dtype)
    px, order = px.sort(dim=1)
    cx = wx[order].cumsum(1)
    pr = pr.sort(dim=1).values
    cr = (torch.arange(1, m + 1, dtype=x.dtype) / m).expand_as(pr)
    u = torch.cat([cx, cr], 1).clamp(0, 1).sort(dim=1).values  # (L, n + m)
    u[:, -1] = 1.0
    du = torch.diff(u, dim=1, prepend=torch.zeros_like(u[:, :1]))
    ix = torch.searchsorted(cx.contiguous(), u.contiguous()).clamp_max(n - 1)
    ir = torch.searchsorted(cr.contiguous(), u.contiguous()).clamp_max(m - 1)
    w2 = (du * (px.gather(1, ix) - pr.gather(1, ir)) ** 2).sum(1)
    return w2.mean().sqrt().item()


def components(x: Tensor, weights: Tensor, means: Tensor) -> Tensor:
    """argmax_k p(k | x) under the prior (unit covariances), ``(n,)``."""
    return (weights.log()[None] - 0.5 * torch.cdist(x, means) ** 2).argmax(1)


def mode_mass(labels: Tensor, w: Tensor, k: int) -> Tensor:
    return torch.zeros(k, dtype=torch.float64).index_add_(0, labels, w.to(torch.float64))


# ---- one run -------------------------------------------------------------------------------------------
def run_seed(score, sde, weights, means, covs, d_y, seed, args, steps):
    """Metrics of every variant for one observation seed."""
    a, ax, sigma_y = observation(weights, means, d_y, seed, args.operator)
    d_x, k = means.shape[1], means.shape[0]
    op = Dense(a)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(d_x, args.directions, generator=g, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    noise = torch.randn(d_y, generator=g, dtype=torch.float64)
    out = {}
    for name in args.variants:
        proposal, noisy, twist_variance = VARIANTS[name]
        if twist_variance == "prior":
            twist_variance = prior_coefficient_variance(weights, means, covs, op)
        extra = {} if twist_variance is None else {"twist_variance": twist_variance}
        if args.corrector_steps and proposal != "mcgdiff":
            extra.update(corrector_steps=args.corrector_steps, corrector_size=args.corrector_size)
        if proposal == "exact-twist":
            chosen = ExactTwist(a=a, weights=weights, means=means, **extra)
        else:
            chosen = PROPOSALS[proposal](**extra)
        s_y = sigma_y if noisy else 0.0
        y = (ax + s_y * noise)[None]
        post_w, post_means, post_covs = linear_gaussian_mixture_posterior(weights, means, covs, op, y, s_y)
        runs, masses = [], []
        for rep in range(args.repeats):  # repeat 0: the seeds of a run without --repeats
            ref1 = exact_samples(post_w[0], post_means[0], post_covs[0], args.particles, g)
            ref2 = exact_samples(post_w[0], post_means[0], post_covs[0], args.particles, g)
            t0 = time.perf_counter()
            res = smc_sample(
                score, sde, y, op, noise_std=s_y, particles=args.particles, steps=steps,
                generator=torch.Generator().manual_seed(10_000 + seed + 100_000 * rep), proposal=chosen,
                options=RunOptions(ess_threshold=args.ess_threshold),
            )
            elapsed = time.perf_counter() - t0
            x, w = res.particles[0].to(torch.float64), res.weights[0]
            lab, lab_ref = components(x, weights, means), components(ref1, weights, means)
            smc_mass = mode_mass(lab, w, k)
            ref_mass = mode_mass(lab_ref, torch.full((len(ref1),), 1 / len(ref1)), k)
            fix = torch.where(smc_mass > 0, post_w[0] / smc_mass.clamp_min(1e-300), torch.zeros_like(smc_mass))
            w_fixed = w * fix[lab]
            masses.append(smc_mass)
            runs.append(dict(
                sigma_y=s_y,
                sw=sliced_w2(x, w, ref1, directions),
                floor=sliced_w2(ref2, None, ref1, directions),
                tv=0.5 * (smc_mass - post_w[0]).abs().sum().item(),
                tv_floor=0.5 * (ref_mass - post_w[0]).abs().sum().item(),
                sw_fixed=sliced_w2(x, w_fixed / w_fixed.sum(), ref1, directions),
                ess=(1 / (w**2).sum()).item(),
                lineages=float(res.distinct_final()[0]),
                time=elapsed,
            ))
        out[name] = {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}
        # the mode masses averaged over the repeats: their TV to the exact weights is the bias of the
        # discretised target plus a Monte Carlo floor of about TV / sqrt(repeats)
        out[name]["tv_pooled"] = 0.5 * (torch.stack(masses).mean(0) - post_w[0]).abs().sum().item()
    return out


def mean_se(v: list[float]) -> tuple[float, float]:
    t = torch.tensor(v, dtype=torch.float64)
    return t.mean().item(), (t.std().item() / math.sqrt(len(v)) if len(v) > 1 else float("nan"))


def ratio_interval(sw: list[float], floor: list[float], draws: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Seed bootstrap of the ratio mean SW / mean floor: its 16% and 84% quantiles over ``draws`` resamples
    of the seeds (with their per-seed values), and the share of resamples above 1.5 (the target)."""
    t = torch.tensor([sw, floor], dtype=torch.float64).T  # (seeds, 2)
    idx = torch.randint(len(t), (draws, len(t)), generator=torch.Generator().manual_seed(seed))
    ratios = t[idx, 0].mean(1) / t[idx, 1].mean(1)
    return ratios.quantile(0.16).item(), ratios.quantile(0.84).item(), (ratios > 1.5).double().mean().item()


def fmt(v: list[float], digits: int = 3) -> str:
    m, s = mean_se(v)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


# ---- main ----------------------------------------------------------------------------------------------
def parse_cells(specs: list[str]) -> list[tuple[int, int]]:
    """'8' -> (8, 1), (8, 2), (8, 4); '80x2' -> (80, 2)."""
    cells = []
    for spec in specs:
        d_x, _, d_y = spec.partition("x")
        cells += [(int(d_x), int(d_y))] if d_y else [(int(d_x), dy) for dy in (1, 2, 4)]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="d_x in {8, 80}, 2 seeds per cell (a few minutes)")
    parser.add_argument("--dims", nargs="+", default=None, help="cells: '8' (d_y = 1, 2, 4) or '80x2'; default 8 80 800")
    parser.add_argument("--seeds", type=int, default=None, help=f"observation seeds per cell (default {DEFAULT_SEEDS})")
    parser.add_argument("--seed-list", type=int, nargs="+", default=None, help="these observation seeds instead of 0 .. S-1")
    parser.add_argument("--steps", type=int, nargs="+", default=[100])
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--ess-threshold", type=float, default=0.5, help="resample when ESS < this * M (0: never)")
    parser.add_argument("--corrector-steps", type=int, default=0,
                        help="K Langevin corrector steps with every move (bootstrap and twisted variants)")
    parser.add_argument("--corrector-size", type=float, default=1.0, help="corrector step in units of sigma(t)^2")
    parser.add_argument("--directions", type=int, default=1000)
    parser.add_argument("--operator", choices=["paper", "gaussian"], default="paper")
    parser.add_argument("--score", choices=["auto", "mixture", "isotropic"], default="auto")
    parser.add_argument("--variants", nargs="+", default=["mcgdiff", "mcgdiff0", "bootstrap0"], choices=list(VARIANTS),
                        help="'0' = noiseless (sigma_y = 0); twisted-inf: twist_variance = inf; twisted-prior: the "
                             "prior's variance of each coefficient V^T x")
    parser.add_argument("--repeats", type=int, default=1,
                        help="independent SMC runs (and exact reference pairs) per seed, metrics averaged per seed")
    parser.add_argument("--verbose", action="store_true", help="print one line per seed")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    torch.set_num_threads(args.threads)
    cells = parse_cells(args.dims or (["8", "80"] if args.quick else ["8", "80", "800"]))
    n_seeds = lambda d: args.seeds or (2 if args.quick else DEFAULT_SEEDS.get(d, 5))
    sde = VP()
    print(f"CPU, {args.threads} thread(s); M = {args.particles:,}, L = {args.directions:,} directions, "
          f"operator = {args.operator}, steps = {args.steps}, ESS threshold = {args.ess_threshold}")
    print("\n| d_x | d_y | N | variant | seeds | σ_y mean [min, max] | SW(SMC) | SW(floor) | ratio | "
          "TV modes SMC | TV modes floor | SW(SMC, mode weights fixed) | final ESS | lineages at t_N | time/run s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    t_start = time.perf_counter()
    scores = {}
    intervals = []
    for d_x, d_y in cells:
        weights, means, covs = prior(d_x)
        if d_x not in scores:
            scores[d_x] = make_score(weights, means, covs, sde, args.score)
        for steps in args.steps:
            rows = {}
            for seed in args.seed_list or range(n_seeds(d_x)):
                for key, r in run_seed(scores[d_x], sde, weights, means, covs, d_y, seed, args, steps).items():
                    rows.setdefault(key, []).append(r)
                    if args.verbose:
                        print(f"  seed {seed} {key}: " + ", ".join(f"{n}={v:.4g}" for n, v in r.items()), flush=True)
            for name, rs in rows.items():
                proposal, noisy, twist_variance = VARIANTS[name]
                col = lambda n: [r[n] for r in rs]
                s_y = col("sigma_y")
                tv_note = "" if twist_variance in (None, 1.0) else f" (twist variance {twist_variance})"
                k_note = f" + {args.corrector_steps} corrector" if args.corrector_steps and proposal != "mcgdiff" else ""
                r_note = f", {args.repeats} runs per seed" if args.repeats > 1 else ""
                label = f"{proposal}{tv_note}{k_note}, σ_y {'drawn' if noisy else '= 0'}{r_note}"
                sig = f"{sum(s_y) / len(s_y):.3f} [{min(s_y):.3f}, {max(s_y):.3f}]" if noisy else "0"
                ratio = mean_se(col("sw"))[0] / mean_se(col("floor"))[0]
                if len(rs) > 1:
                    lo, hi, above = ratio_interval(col("sw"), col("floor"))
                    intervals.append(f"d_x = {d_x}, d_y = {d_y}, N = {steps}, {label}: ratio {ratio:.2f}, "
                                     f"68% interval [{lo:.2f}, {hi:.2f}], above 1.5 in {above:.0%} of resamples")
                print(f"| {d_x} | {d_y} | {steps} | {label} | {len(rs)} | {sig} | {fmt(col('sw'))} | {fmt(col('floor'))} | "
                      f"{ratio:.2f} | {fmt(col('tv'))} | {fmt(col('tv_floor'))} | {fmt(col('sw_fixed'))} | "
                      f"{mean_se(col('ess'))[0]:.0f} | {mean_se(col('lineages'))[0]:.0f} | {mean_se(col('time'))[0]:.2f} |", flush=True)
    if intervals:
        print("\nThe ratio under a bootstrap over seeds (the per-seed values resampled, 4,000 times):")
        print("\n".join(f"- {line}" for line in intervals))
    print(f"\nTotal wall time {time.perf_counter() - t_start:.0f} s. Paper's figures (MCGdiff, DDRM, DPS): not available here.")


if __name__ == "__main__":
    main()
