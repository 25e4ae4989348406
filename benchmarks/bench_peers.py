"""The peers a user would pick instead of smcdiff, on the shipped digits UNet.

deepinv's diffusion posterior samplers DDRM, DPS and DiffPIR (deepinv 0.5, ``deepinv.sampling``) run with
the shipped digits model as their denoiser (``smcdiff.adapters.deepinv.digits_denoiser``, [0, 1] data),
next to smcdiff's own SMC rows (``smcdiff.restore``) on the same digits, masks and noise level, for

(a) inpainting: held-out digits with a random 25% (4x4) square hole, noiseless;
(b) 4x super-resolution: 8x8 from the 2x2 block means, noiseless.

Metrics follow ``examples/compare_cmde.py``: K = 5 reconstructions per observation (deepinv: K independent
runs; smcdiff: K draws from the weighted particles of one run, ``res.draw(K, g)``, or with ``--populations P``
of P independent runs, draw j from run j mod P), all clamped to [-1, 1];
PSNR of the first draw against the truth; UFID (digit-classifier Fréchet distance) of the first draws
against the truths; the share of first draws that the digit classifier gives the label it gives the
truth; diversity (mean per-pixel std over the K draws, [-1, 1] units); distinct images among the K draws
(up to 1e-6); data fit (PSNR of the first draw's A x against y); network evaluations and seconds per
sampler run ("reconstruction"; for smcdiff one run of M particles per digit yields all K draws).

``--peers azula`` adds azula 0.11's ``TDSSampler`` (Wu et al.'s twisted diffusion sampler, the peer of
``proposal="twisted"``; ``pip install --no-deps azula``) on the same digits model, one run of M particles
per digit at each ``--particles`` M (see :func:`azula_rows`).

deepinv cannot be imported next to a CPU torch without a matching torchvision; run this in an
environment that has deepinv 0.5 (see docs/ecosystem.md), e.g.::

    OMP_NUM_THREADS=1 python benchmarks/bench_peers.py --n 64
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass
class Row:
    task: str
    method: str
    steps: str
    psnr: float
    ufid: float
    label_kept: float
    diversity: float
    distinct: float
    data_fit: float
    evaluations: float  # network evaluations per sampler run (per image of the batch)
    evaluations_k: float  # network evaluations for the K draws of one digit
    backward: bool  # each evaluation also back-propagates through the network
    seconds: float  # seconds per sampler run
    seconds_k: float  # seconds for the K draws of one digit
    out_of_range: float  # share of pixels outside [-1, 1] before clamping
    note: str = ""  # e.g. why a row failed


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64, help="first N held-out digits")
    p.add_argument("--k", type=int, default=5, help="reconstructions per digit (diversity, distinct draws)")
    p.add_argument("--tasks", nargs="+", choices=("inpaint", "sr"), default=["inpaint", "sr"])
    p.add_argument("--peers", nargs="*", choices=("ddrm", "dps", "dps-default", "diffpir", "azula"),
                   default=["ddrm", "diffpir", "dps"],
                   help="dps: guidance='annealed', weight 1 (deepinv's documented natural scale); dps-default: "
                        "deepinv's literal defaults guidance='norm', weight 1; azula: azula 0.11's TDSSampler "
                        "(optional: pip install --no-deps azula) at each --particles M and --steps")
    p.add_argument("--azula-twist-scale", type=float, default=1.0,
                   help="C in azula's TDS twist N(y; A x0_hat, C (sigma_t / alpha_t)^2 A A^T) (its usual choice: 1)")
    p.add_argument("--ddrm-steps", type=int, default=100, help="DDRM noise levels (deepinv default: 100)")
    p.add_argument("--diffpir-steps", type=int, default=100, help="DiffPIR max_iter (deepinv default: 100)")
    p.add_argument("--diffpir-sigma", type=float, default=0.01,
                   help="DiffPIR's sigma ([0, 1] units) for a noiseless physics (sets its data-fidelity weight)")
    p.add_argument("--dps-steps", type=int, default=1000, help="DPS num_steps (deepinv default: 1000)")
    p.add_argument("--proposals", nargs="*", choices=("bootstrap", "mcgdiff", "twisted"),
                   default=["bootstrap", "mcgdiff", "twisted"])
    p.add_argument("--particles", type=int, nargs="+", default=[4, 8])
    p.add_argument("--steps", type=int, default=100, help="smcdiff reverse steps")
    p.add_argument("--kernel", choices=("euler", "ancestral"), default="euler", help="smcdiff reverse kernel")
    p.add_argument("--twist-variances", type=float, nargs="+", default=[1.0],
                   help="twist_variance values for the twisted proposal (one row each; 'inf' allowed)")
    p.add_argument("--smc-runs", nargs="*", default=None, metavar="M:STEPS[:KERNEL]",
                   help="smcdiff runs as particles:steps[:kernel] (e.g. 10:50:ancestral), instead of --particles x --steps")
    p.add_argument("--corrector-steps", type=int, default=0, metavar="K",
                   help="K Langevin corrector steps with every smcdiff move (bootstrap and twisted)")
    p.add_argument("--populations", type=int, default=1, metavar="P",
                   help="smcdiff: P independent runs of M particles per digit (restore(populations=P)); draw j comes "
                        "from run j mod P, so the K draws of P >= K runs share no ancestor (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------
# the digits model as a deepinv denoiser, with its noise range enforced by clamping
# ---------------------------------------------------------------------------------------------------


def make_denoiser():
    from deepinv.models import Denoiser

    from smcdiff.adapters.deepinv import digits_denoiser

    class ClampedDenoiser(Denoiser):
        """``digits_denoiser()`` with sigma clamped into its schedule's range; counts calls and clamps."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = digits_denoiser()
            self.sigma_min, self.sigma_max = float(self.inner.sigma_min), float(self.inner.sigma_max)
            self.reset()

        def reset(self) -> None:
            self.calls, self.below, self.above = 0, 0, 0
            self.seen = [math.inf, -math.inf]

        def forward(self, x, sigma, *args, **kwargs):
            s = torch.as_tensor(sigma).detach().to("cpu", torch.float64)
            lo, hi = s.min().item(), s.max().item()
            self.seen = [min(self.seen[0], lo), max(self.seen[1], hi)]
            self.below += int(lo < self.sigma_min)
            self.above += int(hi > self.sigma_max)
            self.calls += 1
            return self.inner(x, s.clamp(self.sigma_min, self.sigma_max))

    return ClampedDenoiser()


# ---------------------------------------------------------------------------------------------------
# physics
# ---------------------------------------------------------------------------------------------------


def permuted_inpainting(mask_rows: torch.Tensor):
    """Inpainting with one mask per row as a DecomposablePhysics whose singular values are shared by all rows.

    deepinv's DDRM repeats ``physics.mask`` once per row of y, so it needs one mask for the whole batch.
    Each row's V^T is the permutation putting its observed pixels first (all masks hide 16 of 64), so the
    singular values are one shared 0/1 vector; U = V, hence A x = mask_row * x, deepinv Inpainting's y.
    """
    import deepinv as dinv

    b = mask_rows.shape[0]
    flat = mask_rows.reshape(b, -1)
    observed = int(flat[0].sum())
    if not torch.all(flat.sum(1) == observed):
        raise ValueError("all masks must observe the same number of pixels")
    perm = torch.argsort((~flat).to(torch.int8), dim=1, stable=True)  # observed pixels first
    shape = tuple(mask_rows.shape[1:])

    def vt(x):
        return x.reshape(b, -1).gather(1, perm).reshape(b, *shape)

    def v(c):
        return torch.zeros_like(c.reshape(b, -1)).scatter(1, perm, c.reshape(b, -1)).reshape(b, *shape)

    s = torch.zeros(1, *shape)
    s.view(-1)[:observed] = 1.0
    return dinv.physics.DecomposablePhysics(U=v, U_adjoint=vt, V=v, V_adjoint=vt, mask=s)


def block_mean_svd(factor: int = 4, in_shape=(1, 8, 8)):
    """Block averaging as a DecomposablePhysics, with the SVD of ``smcdiff.operators.Downsample`` (for DDRM)."""
    import deepinv as dinv

    from smcdiff.operators import Downsample

    op = Downsample(factor).bind(in_shape)
    s = op.s.to(torch.float32)[None]  # (1, C, H/f, W/f, f^2)
    return dinv.physics.DecomposablePhysics(U=op.U, U_adjoint=op.Ut, V=op.V, V_adjoint=op.Vt, mask=s)


def box_downsampling(factor: int = 4, in_shape=(1, 8, 8)):
    """deepinv ``Downsampling`` with a box filter; 'valid' padding aligns the boxes with the f x f blocks."""
    import deepinv as dinv

    box = torch.ones(1, 1, factor, factor) / factor**2
    return dinv.physics.Downsampling(img_size=in_shape, filter=box, factor=factor, padding="valid")


# ---------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------


def distinct_count(samples: torch.Tensor, tol: float = 1e-6) -> float:
    """Mean over digits of the number of distinct images among the K draws (max abs difference > tol)."""
    n, k = samples.shape[:2]
    flat = samples.reshape(n, k, -1).double()
    total = 0
    for i in range(n):
        reps: list[torch.Tensor] = []
        for j in range(k):
            if not any((flat[i, j] - r).abs().max().item() <= tol for r in reps):
                reps.append(flat[i, j])
        total += len(reps)
    return total / n


def score(task, method, steps, samples, x, fit_fn, clf, evaluations, evaluations_k, backward, seconds, seconds_k) -> Row:
    from smcdiff.metrics import diversity, psnr, ufid

    raw = samples.float()
    out_of_range = ((raw < -1 - 1e-3) | (raw > 1 + 1e-3)).float().mean().item()
    s = raw.clamp(-1, 1)
    first = s[:, 0]
    with torch.no_grad():
        kept = (clf(first).argmax(1) == clf(x).argmax(1)).float().mean().item()
    return Row(
        task=task, method=method, steps=steps,
        psnr=psnr(first, x).mean().item(),
        ufid=ufid(first, x, clf),
        label_kept=kept,
        diversity=diversity(s),
        distinct=distinct_count(raw),
        data_fit=fit_fn(raw[:, 0]).mean().item(),  # before clamping: clamping alone would move A x
        evaluations=evaluations, evaluations_k=evaluations_k, backward=backward,
        seconds=seconds, seconds_k=seconds_k, out_of_range=out_of_range,
    )


# ---------------------------------------------------------------------------------------------------
# the rows
# ---------------------------------------------------------------------------------------------------


def peer_rows(task, x, mask, args, den, clf, fit_fn, log) -> list[Row]:
    """deepinv's samplers on K copies of each digit's measurement (one batch of N K rows per sampler)."""
    import deepinv as dinv
    import numpy as np

    n, k = x.shape[0], args.k
    x01 = ((x + 1) / 2).repeat_interleave(k, 0)  # row i k + j: digit i, run j
    if task == "inpaint":
        m = mask.repeat_interleave(k, 0)
        physics = dinv.physics.Inpainting(img_size=(1, 8, 8), mask=m.float())
        ddrm_physics = permuted_inpainting(m)
    else:
        physics = box_downsampling()
        ddrm_physics = block_mean_svd()
    y = physics.A(x01)  # noiseless; the same y for every sampler
    err = (ddrm_physics.A(x01) - y).abs().max().item()
    log(f"[{task}] DDRM's decomposable physics vs the one of DPS / DiffPIR: max |A x - A' x| = {err:.2e}")
    assert err < 1e-5

    rows = []
    for peer in (p for p in args.peers if p != "azula"):
        den.reset()
        torch.manual_seed(args.seed + 11)
        if peer == "ddrm":
            sampler = dinv.sampling.DDRM(denoiser=den, sigmas=np.linspace(1, 0, args.ddrm_steps))
            name, steps, ph, backward = "deepinv DDRM", f"{args.ddrm_steps} σ-levels (default)", ddrm_physics, False
        elif peer == "diffpir":
            sampler = dinv.sampling.DiffPIR(model=den, data_fidelity=dinv.optim.data_fidelity.L2(),
                                            sigma=args.diffpir_sigma, max_iter=args.diffpir_steps)
            name, steps, ph, backward = "deepinv DiffPIR", f"{args.diffpir_steps} (default)", physics, False
        else:
            guidance = "annealed" if peer == "dps" else "norm"
            sampler = dinv.sampling.DPS(den, num_steps=args.dps_steps, weight=1.0, guidance=guidance,
                                        rng=torch.Generator().manual_seed(args.seed + 11))
            name, steps, ph, backward = f"deepinv DPS ({guidance}, λ = 1)", f"{args.dps_steps} (default 1000)", physics, True
        t0 = time.perf_counter()
        if backward:
            out = sampler(y, ph)
        else:
            with torch.no_grad():
                out = sampler(y, ph)
        sec = time.perf_counter() - t0
        samples = (2 * out.detach().float() - 1).reshape(n, k, 1, 8, 8)
        if not torch.isfinite(samples).all():
            log(f"[{task}] {name}: non-finite output in {(~torch.isfinite(samples)).float().mean().item():.1%} of pixels")
            samples = torch.nan_to_num(samples, 0.0, 1.0, -1.0)
        note = (f"σ passed to the denoiser in [{den.seen[0]:.4g}, {den.seen[1]:.4g}] ([0, 1] units); "
                f"clamped to [{den.sigma_min:.4g}, {den.sigma_max:.4g}] on {den.below} calls below, {den.above} above")
        row = score(task, name, steps, samples, x, fit_fn, clf, den.calls, den.calls * k, backward,
                    sec / (n * k), sec / n)
        rows.append(row)
        log(f"[{task}] {name}: {den.calls} calls of batch {n * k}, {sec:.1f} s; {note}")
        log("  " + line(row))
    return rows


def azula_rows(task, x, mask, args, model, clf, fit_fn, log) -> list[Row]:
    """azula 0.11's ``TDSSampler`` (Wu et al.'s twisted diffusion sampler) with the digits model as its denoiser.

    One sampler run of M particles per digit (its particles form one placement, so digits are separate
    runs), on a uniform grid of ``--steps`` times over the model's [eps, T]; the twist is azula's Tweedie
    Gaussian N(y; A x0_hat, C (sigma_t / alpha_t)^2 A A^T) (noiseless y; A A^T = I for the mask, I / 16 for
    the 4x4 block means), C = ``--azula-twist-scale``. It resamples multinomially at every step and returns
    unweighted particles, so the K draws are drawn uniformly (with replacement) from them. azula draws from
    torch's global RNG, seeded per digit.
    """
    from azula.guidance.tds import TDSSampler

    from common import azula_denoiser

    from smcdiff.operators import Downsample

    n, k, c = x.shape[0], args.k, args.azula_twist_scale
    down = Downsample(4).bind((1, 8, 8))
    rows = []
    for m in args.particles:
        den = azula_denoiser(model)
        draws, failed, t0 = [], 0, time.perf_counter()
        g = torch.Generator().manual_seed(args.seed + 2)
        for i in range(n):  # one placement per observation: azula resamples across its whole batch
            if task == "inpaint":
                obs, y = mask[i], x[i]

                def twist(x_hat, so, obs=obs, y=y):
                    var = c * so**2
                    log_p = -0.5 * (y - x_hat) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)
                    return torch.where(obs, log_p, torch.zeros_like(log_p))
            else:
                y = down.A(x[i : i + 1])

                def twist(x_hat, so, y=y):
                    var = c * so**2 / 16
                    return -0.5 * (y - down.A(x_hat)) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)

            torch.manual_seed(args.seed + 13 + i)
            sampler = TDSSampler(den, twist, start=1.0, stop=0.0, steps=args.steps, silent=True)
            out = sampler(sampler.init((m, 1, 8, 8)))
            if not torch.isfinite(out).all():
                failed += 1
                out = torch.nan_to_num(out, 0.0, 1.0, -1.0)
            draws.append(out[torch.randint(m, (k,), generator=g)])
        sec = time.perf_counter() - t0
        samples = torch.stack(draws)
        name = f"azula TDS (C = {c:g}), M = {m}"
        row = score(task, name, f"{args.steps}", samples, x, fit_fn, clf, den.calls * m / n, den.calls * m / n,
                    True, sec / n, sec / n)
        if failed:
            row.note = f"non-finite output for {failed} of {n} digits (replaced by 0, clamped)"
        rows.append(row)
        log(f"[{task}] {name}: {sec:.1f} s" + (f"; {row.note}" if failed else ""))
        log("  " + line(row))
    return rows


def smc_rows(task, x, mask, args, model, clf, fit_fn, log) -> list[Row]:
    from smcdiff import RunOptions, restore
    from smcdiff.operators import Downsample

    n = x.shape[0]
    if task == "inpaint":
        y, operator = torch.where(mask, x, torch.zeros_like(x)), mask
    else:
        operator = Downsample(4)
        y = operator.bind((1, 8, 8)).A(x)
    rows = []
    if args.smc_runs is None:
        runs = [(m, args.steps, args.kernel) for m in args.particles]
    else:
        runs = [(int(p[0]), int(p[1]), p[2] if len(p) > 2 else args.kernel) for p in (r.split(":") for r in args.smc_runs)]
    if args.corrector_steps:
        if "mcgdiff" in args.proposals:
            raise SystemExit("--corrector-steps applies to the bootstrap and twisted proposals")
        extra_all = {"corrector_steps": args.corrector_steps}
    else:
        extra_all = {}
    settings = [(p, c2) for p in args.proposals for c2 in (args.twist_variances if p == "twisted" else [1.0])]
    for proposal, c2 in settings:
        extra = ({"twist_variance": c2} if proposal == "twisted" else {}) | extra_all
        for m, steps, kernel in runs:
            g = torch.Generator().manual_seed(args.seed + 2)
            name = (f"smcdiff {proposal}" + (f" (twist variance {c2:g})" if c2 != 1.0 else "") + f", M = {m}"
                    + (f", {kernel}" if kernel != "euler" else "")
                    + (f", {args.corrector_steps} corrector" if args.corrector_steps else "")
                    + (f", {args.populations} runs" if args.populations != 1 else ""))
            t0 = time.perf_counter()
            try:
                res = restore(
                    model, y, operator, noise_std=0.0, particles=m, steps=steps, kernel=kernel, generator=g,
                    proposal=proposal, options=RunOptions(populations=args.populations), **extra,
                )
            except ValueError as err:  # e.g. a non-finite twist gradient; record the failure and go on
                sec = time.perf_counter() - t0
                nan = float("nan")
                rows.append(Row(task, name + " (failed)", f"{steps}", nan, nan, nan, nan, nan, nan,
                                args.populations * m * steps, args.populations * m * steps, proposal == "twisted", nan, nan, nan,
                                note=f"{type(err).__name__}: {err} (after {sec:.1f} s)"))
                log(f"[{task}] {name}: FAILED after {sec:.1f} s: {err}")
                continue
            draws = res.draw(args.k, g)
            evals = res.model_evaluations / n
            row = score(task, name, f"{steps}", draws, x, fit_fn, clf, evals, evals,
                        proposal == "twisted", res.seconds / n, res.seconds / n)
            rows.append(row)
            lineages = res.weighted.distinct_final().double().mean().item()
            log(f"[{task}] {name}: {res.seconds:.1f} s, final lineages {lineages:.2f} of {args.populations * m}")
            log("  " + line(row))
    return rows


# ---------------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------------


def _f(v, d=2):
    return "∞" if math.isinf(v) else ("–" if math.isnan(v) else f"{v:.{d}f}")


def line(r: Row) -> str:
    bw = " (+bwd)" if r.backward else ""
    kept = "–" if math.isnan(r.label_kept) else f"{r.label_kept:.0%}"
    return (f"| {r.method} | {r.steps} | {_f(r.psnr)} | {_f(r.ufid)} | {kept} | {_f(r.diversity, 3)} "
            f"| {_f(r.distinct, 2)} | {_f(r.data_fit, 1)} | {r.evaluations:,.0f}{bw} | {r.evaluations_k:,.0f} "
            f"| {_f(r.seconds * 1e3, 1)} | {_f(r.seconds_k * 1e3, 1)} |")


HEAD = ("| method | steps | PSNR ↑ | UFID ↓ | label kept ↑ | diversity | distinct / K | data fit (dB) | NFE / run "
        "| NFE / K draws | ms / run | ms / K draws |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def table(rows, n, k, floor) -> str:
    titles = {"inpaint": f"Inpainting, random 4x4 (25%) hole, noiseless, {n} held-out digits",
              "sr": f"4x super-resolution (8x8 from 2x2 block means), noiseless, {n} held-out digits"}
    parts = []
    for task in ("inpaint", "sr"):
        sel = [r for r in rows if r.task == task]
        if sel:
            parts.append(f"**{titles[task]}** (K = {k})\n\n{HEAD}\n" + "\n".join(line(r) for r in sel))
    text = "\n\n".join(parts)
    for r in rows:
        if r.note:
            text += f"\n\n{r.task}, {r.method}: {r.note}"
    text += (f"\n\nUFID between the {n} held-out digits and {n} training digits (two sets of real digits): {floor:.2f}. "
             "A run: one deepinv sampler call per image, one SMC run of M particles per digit (which gives all K "
             "draws). (+bwd): every evaluation also back-propagates through the UNet.")
    return text


def main(argv=None) -> list[Row]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    import deepinv as dinv

    from smcdiff.classifier import load_digit_classifier
    from smcdiff.data import load_digits_images
    from smcdiff.models import load_model
    from smcdiff.masks import random_square_masks
    from smcdiff.metrics import consistency, digit_fid, masked_psnr
    from smcdiff.operators import Downsample

    def log(msg):
        print(msg, flush=True)

    log(f"deepinv {dinv.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    x = load_digits_images("test")[: args.n]
    n = x.shape[0]
    mask = random_square_masks(n, 8, 8, 0.25, generator=torch.Generator().manual_seed(0))
    clf = load_digit_classifier()
    den = make_denoiser()
    model = load_model("digits")
    log(f"denoiser σ range ([0, 1] units): [{den.sigma_min:.5g}, {den.sigma_max:.5g}]")

    # the deepinv box-filter downsampling is smcdiff's Downsample(4)
    probe = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ref = Downsample(4).bind((1, 8, 8)).A(probe.double())
    err = (box_downsampling().A(probe).double() - ref).abs().max().item()
    log(f"deepinv Downsampling(box 4x4, factor 4, padding='valid') vs smcdiff Downsample(4): max |diff| = {err:.2e}")
    assert err < 1e-6

    rows: list[Row] = []
    for task in args.tasks:
        if task == "inpaint":
            fit = lambda xh: masked_psnr(xh, x, mask)  # noqa: E731
        else:
            low = Downsample(4).bind((1, 8, 8)).A(x)
            fit = lambda xh: consistency(xh, low, lambda z: Downsample(4).bind((1, 8, 8)).A(z))  # noqa: E731
        rows += peer_rows(task, x, mask, args, den, clf, fit, log)
        if "azula" in args.peers:
            rows += azula_rows(task, x, mask, args, model, clf, fit, log)
        rows += smc_rows(task, x, mask, args, model, clf, fit, log)
    floor = digit_fid(x, load_digits_images("train")[:n], clf)
    text = table(rows, n, args.k, floor)
    wall = time.perf_counter() - t_start
    print("\n" + text + f"\n\nWall time: {wall:.0f} s", flush=True)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")
    if args.json is not None:
        meta = {kk: str(v) if isinstance(v, Path) else v for kk, v in vars(args).items()}
        args.json.write_text(json.dumps({"args": meta, "ufid_floor": floor, "wall_s": wall,
                                         "rows": [asdict(r) for r in rows]}, indent=2))
    return rows


if __name__ == "__main__":
    main()
