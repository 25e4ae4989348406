"""Shared helpers of the benchmark scripts: timing, the digits UNet score, peak memory in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall-clock seconds of ``fn()`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def digits_score():
    """The shipped digits model as a score (a DiffusersScore)."""
    from smcdiff.adapters import DiffusersScore
    from smcdiff.models import DEFAULT_MODEL_PATH

    return DiffusersScore.from_pretrained(str(DEFAULT_MODEL_PATH))


def peak_rss_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running ``code`` (ru_maxrss of the child)."""
    probe = code + "\nimport resource, json; print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} thread(s)"


def paired_difference(a, b) -> tuple[float, float]:
    """Mean of ``a - b`` over paired items (images) and the half-width of its 95 % normal interval."""
    d = torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)
    return float(d.mean()), float(1.96 * d.std() / d.numel() ** 0.5)


def fd_bootstrap(feats: dict[str, torch.Tensor], feats_ref: torch.Tensor, base: str, reps: int = 200, seed: int = 0) -> dict[str, dict]:
    """Fréchet distance of every row's draws against the reference images, with a paired bootstrap over images.

    ``feats[name]``: ``(N, K, F)`` features of K draws per image; ``feats_ref``: ``(N, F)`` features of the N true
    images. Each bootstrap replicate resamples the N images (with their draws) once for all rows, so the interval
    of FD(row) - FD(base) is paired. Returns ``{name: {"fd", "diff", "lo", "hi"}}`` (2.5 % and 97.5 % quantiles).
    """
    from smcdiff.metrics import frechet_distance

    n = feats_ref.shape[0]
    fd = lambda f, idx: frechet_distance(f[idx].flatten(0, 1), feats_ref[idx])  # noqa: E731
    full = torch.arange(n)
    out = {name: {"fd": fd(f, full)} for name, f in feats.items()}
    g = torch.Generator().manual_seed(seed)
    diffs = {name: [] for name in feats}
    for _ in range(reps):
        idx = torch.randint(0, n, (n,), generator=g)
        ref = fd(feats[base], idx)
        for name, f in feats.items():
            diffs[name].append(fd(f, idx) - ref)
    for name, d in diffs.items():
        d = torch.tensor(d)
        out[name].update(diff=out[name]["fd"] - out[base]["fd"], lo=float(d.quantile(0.025)), hi=float(d.quantile(0.975)))
    return out


def dps_sample(model, residual, rows: int, steps: int, generator: torch.Generator, zeta: float = 1.0) -> torch.Tensor:
    """DPS (Chung et al. 2023, Algorithm 1) on ``model.time_grid(steps)`` with the ancestral kernel: after each
    unconditional step, x_{t-1} <- x'_{t-1} - zeta_t grad_{x_t} ||r(x0_hat(x_t))||^2 with zeta_t = zeta / ||r||, where
    ``residual(x0_hat) -> (rows, ...)`` is the misfit of the observation (y - A x0_hat for a linear one; the
    distance to the observed bin for a quantised one). One network evaluation and one backward pass per step."""
    from smcdiff.dynamics import reverse_step

    x = model.sde.prior_sample((rows, *model.event_shape), generator=generator, dtype=torch.float32)
    grid = model.time_grid(steps).float()
    for t_, s_ in zip(grid[:-1], grid[1:]):
        t, s = t_.expand(rows), s_.expand(rows)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            score = model(xg, t)
            r2 = residual(model.sde.tweedie(xg, t, score)).flatten(1).square().sum(1)
            (g,) = torch.autograd.grad(r2.sum(), xg)
        mean, var = reverse_step(model.sde, "ancestral", x, t, s, t - s, score.detach())
        norm = r2.detach().sqrt().clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
        x = mean + var.sqrt() * torch.randn(x.shape, generator=generator) - zeta * g / norm
    return x


def _svd_start(model, operator, y: torch.Tensor, steps: int, generator: torch.Generator):
    """What DDRM and DiffPIR start from: the bound operator, the SDE, a prior draw of ``y.shape[0]`` rows, the grid,
    and the observed mask, singular values and y_bar = U^T y / s on the coefficient grid, per row."""
    op = operator.bind(tuple(model.event_shape))
    sde = model.sde
    x = sde.prior_sample((y.shape[0], *model.event_shape), generator=generator, dtype=torch.float32)
    obs = torch.broadcast_to(op.observed, (y.shape[0], *op.coef_shape))
    return op, sde, x, model.time_grid(steps).float(), obs, torch.broadcast_to(op.s.float(), obs.shape), op.coefficients(y.float())


def diffpir_sample(model, operator, y: torch.Tensor, noise_std: float, steps: int, generator: torch.Generator,
                   lam: float = 7.0, zeta: float = 1.0) -> torch.Tensor:
    """DiffPIR (Zhu et al. 2023, Algorithm 1) on smcdiff's SVD operators, for a VP model: one network evaluation per
    step, deepinv's defaults lambda = 7, zeta = 1.

    From t to s: x0 = Tweedie's denoiser; the data step x0' = argmin ||y - A x||^2 + rho_t ||x - x0||^2
    with rho_t = lambda sigma_y^2 / (sigma_t / alpha_t)^2, solved in the singular basis (observed coefficient i:
    (s_i^2 y_bar_i + rho_t x0_bar_i) / (s_i^2 + rho_t); sigma_y = 0 projects onto A x = y); then
    x_s = alpha_s x0' + sigma_s (sqrt(1 - zeta) eps_hat + sqrt(zeta) z) with eps_hat = (x_t - alpha_t x0') / sigma_t.
    ``y``: (rows, *observation); returns ``(rows, *event_shape)``, the state at the last grid time in the data's scale."""
    op, sde, x, grid, obs, s_val, ybar = _svd_start(model, operator, y, steps, generator)
    rows, s2 = y.shape[0], s_val.square()
    for t_, s_ in zip(grid[:-1], grid[1:]):
        t = t_.expand(rows)
        with torch.no_grad():
            x0 = sde.tweedie(x, t, model(x, t))
        a_t, a_s, sig_t, sig_s = (float(v) for v in (sde.alpha(t_), sde.alpha(s_), sde.sigma(t_), sde.sigma(s_)))
        rho = lam * noise_std**2 / (sig_t / a_t) ** 2
        x0b = op.Vt(x0)
        x0b = torch.where(obs, (s2 * ybar + rho * x0b) / (s2 + rho), x0b)
        x0 = op.V(x0b)
        eps = (x - a_t * x0) / sig_t
        z = torch.randn(x.shape, generator=generator)
        x = a_s * x0 + sig_s * ((1 - zeta) ** 0.5 * eps + zeta**0.5 * z)
    return x / float(sde.alpha(grid[-1]))


def azula_denoiser(model):
    """An smcdiff score model as an azula 0.11 ``Denoiser`` (``pip install --no-deps azula``): azula's time u in
    [0, 1] is mapped linearly onto the model's [eps, T], its schedule is the model SDE's alpha and sigma, and the
    posterior mean is Tweedie's denoiser. ``calls`` counts network evaluations."""
    from azula.denoise import Denoiser, DiracPosterior

    sde = model.sde
    t_min, t_max = float(sde.eps), float(sde.T)
    times = lambda u: t_min + torch.as_tensor(u, dtype=torch.float64) * (t_max - t_min)  # noqa: E731

    class Schedule:
        def __call__(self, u):
            t = times(u).reshape(-1)[:1]
            return sde.alpha(t).float().squeeze(), sde.sigma(t).float().squeeze()

    class ModelDenoiser(Denoiser):
        def __init__(self) -> None:
            super().__init__()
            self.schedule = Schedule()
            self.calls = 0

        def forward(self, x_t, u, **kwargs):
            self.calls += 1
            t = times(u).reshape(-1)[:1].to(x_t.dtype).expand(x_t.shape[0])
            return DiracPosterior(sde.tweedie(x_t, t, model(x_t, t)))

    return ModelDenoiser()


def ddrm_sample(model, operator, y: torch.Tensor, noise_std: float, steps: int, generator: torch.Generator,
                eta: float = 0.85, eta_b: float = 1.0) -> torch.Tensor:
    """DDRM (Kawar et al. 2022, Eq. 7-8) on smcdiff's SVD operators, for a VP model: one network evaluation per step.

    In the variance-exploding scale x_t / alpha_t (noise level s_t = sigma_t / alpha_t) and the singular basis
    (x_bar = V^T x, y_bar = U^T y / s_i with noise sy_i = sigma_y / s_i), from t to s with x0_bar = V^T x0_hat:
    unobserved coefficients x0_bar + sqrt(1 - eta^2) s_s (x_bar_t - x0_bar) / s_t + eta s_s z; observed ones with
    s_s < sy_i: x0_bar + sqrt(1 - eta^2) s_s (y_bar - x0_bar) / sy_i + eta s_s z; the others
    (1 - eta_b) x0_bar + eta_b y_bar + sqrt(s_s^2 - eta_b^2 sy_i^2) z. ``y``: (rows, *observation); returns
    ``(rows, *event_shape)``, the state at the last grid time in the data's scale."""
    op, sde, x, grid, obs, s_val, ybar = _svd_start(model, operator, y, steps, generator)
    rows = y.shape[0]
    sy = torch.where(obs, noise_std / torch.where(obs, s_val, torch.ones_like(s_val)), torch.full_like(s_val, float("inf")))
    for t_, s_ in zip(grid[:-1], grid[1:]):
        t = t_.expand(rows)
        with torch.no_grad():
            x0 = sde.tweedie(x, t, model(x, t))
        a_t, a_s = float(sde.alpha(t_)), float(sde.alpha(s_))
        st, ss = float(sde.sigma(t_)) / a_t, float(sde.sigma(s_)) / a_s
        x0b, xtb = op.Vt(x0), op.Vt(x / a_t)
        z = torch.randn(x0b.shape, generator=generator)
        free = x0b + (1 - eta**2) ** 0.5 * ss * (xtb - x0b) / st + eta * ss * z
        safe_sy = torch.where(torch.isfinite(sy) & (sy > 0), sy, torch.ones_like(sy))
        close = x0b + (1 - eta**2) ** 0.5 * ss * (ybar - x0b) / safe_sy + eta * ss * z
        far = (1 - eta_b) * x0b + eta_b * ybar + (ss**2 - eta_b**2 * torch.where(torch.isfinite(sy), sy, torch.zeros_like(sy)) ** 2).clamp_min(0).sqrt() * z
        new = torch.where(obs, torch.where(ss < sy, close, far), free)
        x = a_s * op.V(new)
    return x / float(sde.alpha(grid[-1]))
