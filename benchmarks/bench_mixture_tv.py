"""Mode weights of a 25-mode Gaussian-mixture posterior: SMC proposals against i.i.d. exact sampling (issue 11).

    python benchmarks/bench_mixture_tv.py [--threads 1] [--dims 8 20] [--tasks mask dense] [--runs 16]
        [--particles 1000] [--steps 200] [--variants bootstrap twisted twisted:inf mcgdiff bootstrap+1 azula]
        [--equal-time twisted:inf]

Prior: the mixture of the MCGdiff benchmark (``bench_linear_gmm.py``): 25 unit-covariance Gaussians with
means (8i, 8j, 8i, 8j, ...), i, j in {-2..2}, weights from a Dirichlet(1/2, ...) draw (seed 0). Score:
the exact ``GaussianMixtureScore`` under ``VP()``, Euler-Maruyama steps (``--kernel ancestral`` for the ancestral kernel).

Tasks:
- ``mask``: coordinate 0 observed without noise at y = 4, half-way between the rows i = 0 and i = 1
  of modes, so the posterior spreads its mass over ten modes whose weights depend on the prior's;
- ``dense``: y = a^T x + sigma_y eps with a a fixed random unit vector (seed 1), sigma_y = 0.5 and
  y = a^T (m_(0,0) + m_(1,0)) / 2 (again half-way between two modes); the bootstrap proposal cannot run
  (it needs sigma_y = 0).

Metric: per run, the total variation between the weighted mode frequencies of the particles (each
particle goes to argmax_k of its prior responsibility) and the exact posterior weights
(``gaussian_mixture_posterior`` / ``linear_gaussian_mixture_posterior``), averaged over runs; next to
it the same TV for M i.i.d. exact draws (the expectation over 4,000 multinomial draws), and their
ratio (the target of issue 11: <= 2 at M = 1,000, and no proposal worse than the bootstrap). Columns
that tell where the error comes from:
- pooled TV: the TV of the mode frequencies averaged over all runs, i.e. the bias of the target (the
  discretised model, unadjusted corrector moves) plus a Monte Carlo floor of about TV_iid / sqrt(runs);
- lineages: distinct ancestors at the first step of the final particles;
- resampling events in the first and the second half of the steps (the modes separate in the second
  half: alpha_t m_k spreads beyond sigma_t);
- final ESS.

Variants: ``bootstrap`` (SMCDiff), ``bootstrap+K`` (K Langevin corrector steps per move), ``V@E`` (any
SMC variant V with the ESS threshold E instead of 0.5, e.g. ``bootstrap@0``, ``twisted@0:prior``),
``mcgdiff``, ``twisted`` (TDS with the default twist variance, ``twist_variance=1``, meant for data of
unit scale), ``twisted:C`` (``twist_variance=C``; ``prior`` for the prior variance of the observed
coefficient, 137 for the mask task; ``inf`` for the scale-free sigma_t^2 / alpha_t^2), ``exact-twist``
(TDS with the exact log p(y | x_t) of the mixture, as a bound on what a better twist could reach), and ``azula`` / ``azula:C`` (azula 0.11's ``TDSSampler``, optional:
``pip install --no-deps azula``; its twist N(y; A x0_hat, sigma_y^2 + C (sigma_t / alpha_t)^2), C = 1 by
default; it resamples multinomially at every step and returns unweighted samples; it draws from torch's
global RNG, seeded per run). ``--equal-time V`` adds, for each listed variant V, a run whose M is chosen
so that its seconds per run match those of the task's first variant at ``--particles`` (the bootstrap
for the mask task; measured on one pilot run).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import math
import time

import torch
from torch import Tensor

from smcdiff import VP, Bootstrap, GaussianMixtureScore, MCGdiff, RunOptions, Twisted, smc_sample
from smcdiff.oracle.gaussian import gaussian_mixture_posterior, linear_gaussian_mixture_posterior
from smcdiff.operators import Dense
from smcdiff.proposals import TwistedModel

K_SIDE = (-2, -1, 0, 1, 2)


def prior(d: int) -> tuple[Tensor, Tensor, Tensor]:
    means = torch.tensor([[8.0 * i, 8.0 * j] * (d // 2) for i in K_SIDE for j in K_SIDE], dtype=torch.float64)
    eps = torch.randn(len(means), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = eps**2 / (eps**2).sum()
    return weights, means, torch.eye(d, dtype=torch.float64).expand(len(means), d, d).clone()


class Task:
    """One observation of the mixture and its exact posterior mode weights."""

    def __init__(self, name: str, d: int) -> None:
        self.name, self.d = name, d
        self.weights, self.means, self.covs = prior(d)
        if name == "mask":
            self.observation = torch.zeros(1, d, dtype=torch.bool)
            self.observation[0, 0] = True
            self.y = torch.zeros(1, d, dtype=torch.float64)
            self.y[0, 0] = 4.0
            self.noise_std = 0.0
            post, _, _ = gaussian_mixture_posterior(self.weights, self.means, self.covs, self.observation, self.y)
            self.a = self.observation.double()
        elif name == "dense":
            a = torch.randn(1, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            self.a = a / a.norm()
            self.observation = Dense(self.a)
            mid = (self.means[12] + self.means[17]) / 2  # modes (i, j) = (0, 0) and (1, 0)
            self.y = (self.a @ mid)[None]
            self.noise_std = 0.5
            post, _, _ = linear_gaussian_mixture_posterior(
                self.weights, self.means, self.covs, self.observation, self.y, self.noise_std
            )
        else:
            raise ValueError(f"task must be 'mask' or 'dense', got {name!r}")
        self.post = post[0]

    def prior_variance(self) -> float:
        """The prior variance of the observed coefficient a^T x (``twisted:prior``)."""
        mean = self.weights @ self.means
        centred = self.means - mean
        cov = torch.eye(self.d, dtype=torch.float64) + centred.T @ (self.weights[:, None] * centred)
        a = self.a[0] / self.a[0].norm()
        return float(a @ cov @ a)

    def modes(self, x: Tensor) -> Tensor:
        log_resp = -0.5 * ((x[..., None, :] - self.means) ** 2).sum(-1) + self.weights.log()
        return log_resp.argmax(-1)

    def tv(self, particles: Tensor, weights: Tensor) -> tuple[float, Tensor]:
        freq = torch.zeros(len(self.post), dtype=torch.float64).index_add_(0, self.modes(particles), weights)
        return 0.5 * (freq - self.post).abs().sum().item(), freq

    def tv_iid(self, m: int, draws: int = 4000) -> float:
        g = torch.Generator().manual_seed(123)
        idx = torch.multinomial(self.post.expand(draws, -1), m, replacement=True, generator=g)
        freq = torch.zeros(draws, len(self.post), dtype=torch.float64).scatter_add_(
            1, idx, torch.full(idx.shape, 1.0 / m, dtype=torch.float64)
        )
        return 0.5 * (freq - self.post).abs().sum(1).mean().item()


class ExactTwistModel(TwistedModel):
    """TDS with the exact twist log p(y | x_t) of the mixture (a bound: no denoiser can give it).

    Its proposal object is :class:`ExactTwist` (a new proposal is a particle model and a small frozen
    dataclass that builds it). Given component k, x_0 | x_t ~ N(m_k + alpha / v (x_t - alpha m_k), sigma^2 / v I) with
    v = alpha^2 + sigma^2, so a^T x_0 + sigma_y eps is a 25-component Gaussian mixture in y. Every coordinate
    moves by the twist's gradient (the Gaussian linearisation of the default move is not this twist)."""

    linearised_observed = False

    def __init__(self, problem, task: Task) -> None:
        super().__init__(problem)
        self.task = task

    def log_twist(self, x: Tensor, t: Tensor, score: Tensor, rows: Tensor) -> Tensor:
        tk, sde = self.task, self.problem.sde
        alpha, sigma2 = sde.alpha(t[:1]).double(), sde.sigma(t[:1]).double() ** 2
        resid = x.double()[:, None, :] - alpha * tk.means  # (n, K, d)
        v = alpha**2 + sigma2
        log_resp = torch.log_softmax(tk.weights.log() - 0.5 * (resid**2).sum(-1) / v, dim=-1)
        mean_y = (tk.means + alpha / v * resid) @ tk.a[0]  # (n, K)
        var_y = sigma2 / v * (tk.a[0] ** 2).sum() + tk.noise_std**2
        log_lik = -0.5 * (tk.y[0, 0] - mean_y) ** 2 / var_y - 0.5 * torch.log(2 * math.pi * var_y)
        return torch.logsumexp(log_resp + log_lik, dim=-1)


@dataclass(frozen=True, eq=False)
class ExactTwist(Twisted):
    """The proposal object of :class:`ExactTwistModel` for one task."""

    task: Task | None = None

    name = "exact-twist"

    def build(self, problem) -> ExactTwistModel:
        return ExactTwistModel(problem, self.task)


KERNEL = "euler"  # --kernel


def run_smc(task: Task, sde: VP, score, variant: str, m: int, steps: int, seed: int):
    """(particles (M, d), normalised weights (M,), lineages at t_N, resampled (steps,), final ESS)."""
    name, _, option = variant.partition(":")
    name, _, ess = name.partition("@")
    options = RunOptions(ess_threshold=float(ess)) if ess else RunOptions()
    if name.startswith("bootstrap"):
        proposal = Bootstrap(corrector_steps=int(name.split("+")[1]) if "+" in name else 0)
    elif name == "mcgdiff":
        proposal = MCGdiff()
    elif name == "exact-twist":
        proposal = ExactTwist(task=task)
    elif name == "twisted":
        proposal = Twisted(twist_variance=task.prior_variance() if option == "prior" else float(option) if option else 1.0)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    g = torch.Generator().manual_seed(seed)
    out = smc_sample(score, sde, task.y, task.observation, noise_std=task.noise_std, particles=m, steps=steps,
                     kernel=KERNEL, generator=g, proposal=proposal, options=options)
    return out.particles[0], out.weights[0], int(out.lineages[0, 0]), out.resampled[:, 0], float(out.ess[-1, 0])


# ---- azula (optional peer) ----------------------------------------------------------------------------
def run_azula(task: Task, sde: VP, score, variant: str, m: int, steps: int, seed: int):
    """azula 0.11's TDSSampler on the same exact score and time grid; unweighted samples."""
    from azula.denoise import Denoiser, DiracPosterior
    from azula.guidance.tds import TDSSampler

    _, _, option = variant.partition(":")
    scale = float(option) if option else 1.0
    t_min, t_max = sde.eps, sde.T

    def times(u: Tensor) -> Tensor:
        return t_min + u.double() * (t_max - t_min)

    class Schedule:
        def __call__(self, u: Tensor):
            t = times(torch.as_tensor(u))
            return sde.alpha(t), sde.sigma(t)

    class ExactDenoiser(Denoiser):
        def __init__(self) -> None:
            super().__init__()
            self.schedule = Schedule()

        def forward(self, x_t: Tensor, u: Tensor, **kwargs) -> DiracPosterior:
            t = times(u).expand(x_t.shape[0])
            return DiracPosterior(sde.tweedie(x_t, t, score(x_t, t)))

    a, y, noise2 = task.a[0], task.y[0, 0], task.noise_std**2

    def twist(x_hat: Tensor, sigma_over_alpha: Tensor) -> Tensor:
        var = noise2 + scale * sigma_over_alpha**2 * (a**2).sum()
        return -0.5 * (y - x_hat @ a) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)

    torch.manual_seed(seed)  # azula draws from the global RNG
    sampler = TDSSampler(ExactDenoiser(), twist, start=1.0, stop=0.0, steps=steps, silent=True, dtype=torch.float64)
    x = sampler(sampler.init((m, task.d), dtype=torch.float64))
    nan = torch.zeros(steps, dtype=torch.bool)
    return x, torch.full((m,), 1.0 / m, dtype=torch.float64), -1, nan, float("nan")


# ---- driver -------------------------------------------------------------------------------------------
def measure(task: Task, sde, score, variant: str, m: int, steps: int, runs: int) -> dict:
    runner = run_azula if variant.startswith("azula") else run_smc
    tvs, freqs, lineages, late, early, final_ess, seconds = [], [], [], [], [], [], []
    for seed in range(runs):
        t0 = time.perf_counter()
        particles, weights, lin, resampled, ess = runner(task, sde, score, variant, m, steps, seed)
        seconds.append(time.perf_counter() - t0)
        if not torch.isfinite(particles).all():
            raise RuntimeError(f"{variant}: non-finite particles (seed {seed})")
        tv, freq = task.tv(particles, weights)
        tvs.append(tv)
        freqs.append(freq)
        lineages.append(lin)
        half = len(resampled) // 2  # the loop records step N first: the first half is the high-noise half
        early.append(int(resampled[:half].sum()))
        late.append(int(resampled[half:].sum()))
        final_ess.append(ess)
    tvs_t = torch.tensor(tvs, dtype=torch.float64)
    iid = task.tv_iid(m)
    return dict(
        d=task.d, task=task.name, variant=variant, m=m, steps=steps, runs=runs, tv=tvs_t.mean().item(),
        tv_se=(tvs_t.std() / math.sqrt(runs)).item() if runs > 1 else float("nan"), iid=iid, ratio=tvs_t.mean().item() / iid,
        pooled=0.5 * (torch.stack(freqs).mean(0) - task.post).abs().sum().item(),
        lineages=sum(lineages) / runs, early=sum(early) / runs, late=sum(late) / runs,
        ess=sum(final_ess) / runs, seconds=sum(seconds) / runs,
    )


HEADER = ("| d | task | variant | M | TV ± se | TV i.i.d. | ratio | pooled TV | lineages at t_N | resampling events "
          "(high / low noise half) | final ESS | s / run |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict) -> str:
    lin = "–" if r["lineages"] < 0 else f"{r['lineages']:.0f}"
    ess = "–" if math.isnan(r["ess"]) else f"{r['ess']:.0f}"
    return (f"| {r['d']} | {r['task']} | {r['variant']} | {r['m']} | {r['tv']:.4f} ± {r['tv_se']:.4f} | {r['iid']:.4f} | "
            f"{r['ratio']:.2f} | {r['pooled']:.4f} | {lin} | {r['early']:.0f} / {r['late']:.0f} | {ess} | {r['seconds']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 20])
    parser.add_argument("--tasks", nargs="+", choices=["mask", "dense"], default=["mask", "dense"])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--kernel", choices=["euler", "ancestral"], default="euler", help="smcdiff's reverse kernel")
    parser.add_argument("--variants", nargs="+",
                        default=["bootstrap", "mcgdiff", "twisted", "twisted:prior", "twisted:inf", "exact-twist"])
    parser.add_argument("--equal-time", nargs="*", default=[], metavar="VARIANT",
                        help="also run these variants with M matched to the bootstrap's seconds per run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global KERNEL
    KERNEL = args.kernel
    sde = VP()
    print(HEADER, flush=True)
    for d in args.dims:
        if d % 2:
            raise SystemExit(f"--dims must be even, got {d}")
        for name in args.tasks:
            task = Task(name, d)
            score = GaussianMixtureScore(task.weights, task.means, task.covs, sde)
            variants = [v for v in args.variants if not (name == "dense" and v.startswith("bootstrap"))]
            reference_seconds = None
            for variant in variants:
                try:
                    r = measure(task, sde, score, variant, args.particles, args.steps, args.runs)
                except ImportError as err:
                    print(f"| {d} | {name} | {variant} | skipped: {err} |", flush=True)
                    continue
                if variant == variants[0]:
                    reference_seconds = r["seconds"]
                print(row(r), flush=True)
            for variant in args.equal_time:
                if reference_seconds is None or (name == "dense" and variant.startswith("bootstrap")):
                    continue
                pilot = measure(task, sde, score, variant, args.particles, args.steps, 1)
                m = max(10, int(round(args.particles * reference_seconds / pilot["seconds"])))
                r = measure(task, sde, score, variant, m, args.steps, args.runs)
                r["variant"] = f"{variant} (time of {variants[0]})"
                print(row(r), flush=True)


if __name__ == "__main__":
    main()
