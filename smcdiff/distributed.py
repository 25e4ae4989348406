r"""SMC with each row's particles spread over processes (``torch.distributed``), with exact global resampling.

A run on W processes keeps M / W particles of every observation row in each process. The proposal
and the score see only these (``Problem.local_particles`` is the local count); everything that involves a
row's particles together goes through a *placement* (:class:`smcdiff.feynman_kac.Placement`), the seam
of the one loop :func:`smcdiff.feynman_kac.run_particles`:

    log G (local)  ->  all-gather  ->  log w, log Z increment, ESS of all M    (every process, identically)
    ancestors a ~ resample(log w) with the shared generator                    (every process, identically)
    x, pred <- x[a], pred[a]: rows whose ancestor lives on another process move there (one all-to-all)

Usage, under ``torchrun --nproc-per-node W script.py`` (or ``python -m smcdiff restore ...``)::

    from smcdiff import RunOptions
    from smcdiff.distributed import init_from_env, ShardedPlacement
    init_from_env()                                  # gloo on CPU, nccl on CUDA; reads torchrun's env
    out = smc_sample(score, sde, y, mask, particles=M, options=RunOptions(placement=ShardedPlacement()), generator=g)
    # out: WeightedSamples of all M particles on rank 0, None elsewhere (gather="all": on every rank)

Exact global vs island resampling
---------------------------------
:class:`ShardedPlacement` (``"global"``) is exact: the log-weights of all M particles (B x M float64,
8 B M bytes per step) are all-gathered, every process draws the same ancestors from the same weights
and uniforms, so the particle system is the single-process one with the same law (the same numbers
for W = 1); particles then move only where an ancestor lives on another process.

:class:`IslandPlacement` (``"island"``) never moves particles: each process is an island that
resamples within itself, from its own normalised weights, and keeps an island weight, its share of the
row's total weight (each of its particles gets share / (M / W) after resampling). Only B x W numbers
per step are exchanged (each island's log-sum of weights, for the log-evidence and the global ESS). The
estimator stays unbiased for the evidence Z and consistent for posterior expectations: resampling within
an island is conditionally unbiased for the whole weighted system. The price is variance: islands never
exchange particles, so when the island weights become unequal the effective number of islands drops
and within-island resampling cannot repair it; each island's resampling is also that of an M / W
particle system, noisier than one over M (Verge, Dubarry, Del Moral and Moulines 2015, "On parallel
implementation of sequential Monte Carlo methods: the island particle model"). Use it when the
network between processes, not the score, is the bottleneck, and check the ESS and the spread of the
evidence against a global run. Islands resample when the global ESS falls below the threshold (the same
rule as global resampling; ``resampled`` and ``ess`` stay global records).

Random numbers
--------------
With W > 1, each run draws W + 1 seeds from rank 0's ``generator`` (broadcast): the first seeds a
*shared* generator, identical on every process, used only for what all particles of a row share (the
bootstrap proposal's observation trajectory and the global resampling uniforms); seed ``1 + rank``
seeds the process's own generator for its particles' initial draws and proposal noise (and island
resampling). With W = 1 the user's generator serves both, as in one process, so a sharded run on one
process reproduces :func:`smcdiff.smc_sample` bit for bit for a fixed seed.

Errors
------
Every collective starts with a 1-element all-reduce of an error flag. A process that raises anywhere in
the run (a non-finite score, a bad argument, ...) joins the next collective with the flag set; the
other processes then raise the same exception type with the original message (and "raised on rank r"),
so no process waits forever. A process that dies without raising (killed, segfault) is caught only by
the process group's timeout (:func:`init_from_env` sets 10 minutes).
"""

from __future__ import annotations

import builtins
import contextlib
import math
import os
import pickle
import queue as queue_module
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Literal

import torch
import torch.distributed as dist
from torch import Tensor

from .feynman_kac import Placement, Streams, WeightedSamples
from .resampling import Resampling, normalize_log_weights, resample

__all__ = [
    "Placement",
    "ShardedPlacement",
    "IslandPlacement",
    "Traffic",
    "init_from_env",
    "placement_from_env",
    "sharded_smc_sample",
    "run_local",
]

Gather = Literal["rank0", "all"]


@dataclass
class Traffic:
    """Bytes this process exchanged, by kind (diagnostics; accumulates over runs).

    ``weights``: log-weights (or island sums) received; ``moved``: bytes of particle rows sent to other
    processes (``rows`` of them); ``control``: error flags and seeds; ``output``: the final gather;
    ``steps``: reweighting steps; ``exchanges``: steps that moved particles.
    """

    weights: int = 0
    moved: int = 0
    rows: int = 0
    control: int = 0
    output: int = 0
    steps: int = 0
    exchanges: int = 0


class ShardedPlacement(Placement):
    """Each row's M particles spread over the processes of ``group``, M / W each; exact global resampling.

    Parameters
    ----------
    group : a ``torch.distributed`` process group (default: the default group, which must be initialised,
        e.g. by :func:`init_from_env` under torchrun).
    gather : ``"rank0"`` (default): the output :class:`WeightedSamples` with all M particles on rank 0,
        None elsewhere; ``"all"``: on every process.

    Particles stay on their device; collectives go through the CPU for gloo and through the particles'
    CUDA device for nccl. ``traffic`` counts the bytes this process exchanged. The callback of a run
    sees this process's particles ``(B, M / W, ...)`` with the global ``log_weights`` and ``ancestors``
    ``(B, M)``; this process holds global particle indices ``rank * M / W ... (rank + 1) * M / W - 1``.
    """

    def __init__(self, group: Any = None, *, gather: Gather = "rank0") -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "a sharded placement needs an initialised torch.distributed process group: run under torchrun "
                "and call smcdiff.distributed.init_from_env() (or dist.init_process_group) first"
            )
        if gather not in ("rank0", "all"):
            raise ValueError(f"gather must be 'rank0' or 'all', got {gather!r}")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.gather = gather
        nccl = dist.get_backend(group) == "nccl"
        self.comm_device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        self.traffic = Traffic()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size}, gather={self.gather!r})"

    # ---- collectives: each starts with the error flag, so that a failed process cannot leave others waiting ----
    def _check(self, failed: bool = False) -> None:
        """All-reduce an error flag; if another process failed, raise its error here."""
        flag = torch.tensor([int(failed)], dtype=torch.int64, device=self.comm_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        self.traffic.control += 8
        if flag.item() and not failed:
            raise _peer_error(self._errors(None), self.world_size)

    def _errors(self, err: BaseException | None) -> list:
        info = None if err is None else (type(err).__module__, type(err).__qualname__, str(err))
        infos: list = [None] * self.world_size
        dist.all_gather_object(infos, info, group=self.group)
        return infos

    @contextlib.contextmanager
    def guard(self):
        try:
            yield
        except Exception as err:
            if not getattr(err, "_smcdiff_peer", False):  # this process failed: tell the others, then raise
                self._check(failed=True)
                self._errors(err)
            raise

    def _all_gather(self, t: Tensor, dim: int) -> Tensor:
        """Concatenation over processes (in rank order) of ``t`` along ``dim``, on every process."""
        src = t.detach().to(self.comm_device).contiguous()
        parts = [torch.empty_like(src) for _ in range(self.world_size)]
        self._check()
        dist.all_gather(parts, src, group=self.group)
        return torch.cat(parts, dim=dim).to(t.device)

    # ---- the placement's hooks ----
    def local_particles(self, particles: int) -> int:
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1 or particles % self.world_size:
            raise ValueError(
                f"particles must be a positive multiple of the number of processes ({self.world_size}): each holds "
                f"particles / {self.world_size} of every row; got {particles!r}"
            )
        return particles // self.world_size

    def total(self, local: int) -> int:
        return local * self.world_size

    def streams(self, generator: torch.Generator | None, device: torch.device) -> Streams:
        if self.world_size == 1:
            return Streams(generator, generator)  # one process: exactly the single-process run
        where = generator.device if generator is not None else torch.device(device)
        seeds = torch.randint(0, 2**62, (self.world_size + 1,), generator=generator, device=where).to(self.comm_device)
        self._check()
        dist.broadcast(seeds, src=dist.get_global_rank(self.group, 0) if self.group is not None else 0, group=self.group)
        self.traffic.control += seeds.numel() * 8
        seeds = seeds.tolist()
        return Streams(torch.Generator(where).manual_seed(seeds[1 + self.rank]), torch.Generator(where).manual_seed(seeds[0]))

    def reweight(self, log_w: Tensor, log_g: Tensor) -> tuple[Tensor, Tensor]:
        log_g = self._all_gather(log_g, dim=1)  # (B, M): the global weights, identical everywhere
        self.traffic.weights += log_g.numel() // self.world_size * (self.world_size - 1) * log_g.element_size()
        self.traffic.steps += 1
        return super().reweight(log_w, log_g)

    def select(self, x: Tensor, pred: dict[str, Tensor], ancestors: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Reorder by global ``ancestors: (B, M)``: the rows whose ancestor lives elsewhere arrive by all-to-all.

        Each process computes the whole exchange plan from the (identical) ancestors, so no sizes are
        exchanged; a particle needed several times by one process travels once. ``pred`` tensors that are
        expanded along the particle dimension (stride 0: a per-row value, the same for every particle
        and every process, like the bootstrap's y_{t_{k-1}}) are not moved.
        """
        b, ml = x.shape[:2]
        r, w = self.rank, self.world_size
        m, bm = ml * w, b * ml * w
        anc = ancestors.long()
        rows = torch.arange(b, device=anc.device)[:, None]
        owner = anc // ml  # (B, M) process holding each slot's ancestor
        dest = (torch.arange(m, device=anc.device) // ml).expand(b, m)  # process holding each slot
        key = rows * m + anc  # the ancestor as a global particle id
        remote = owner != dest
        mine = slice(r * ml, (r + 1) * ml)
        if not bool(remote.any()):  # every ancestor is local (the same decision on every process)
            return super().select(x, pred, anc[:, mine] - r * ml)
        # what this process sends: unique (destination, particle) pairs, sorted by destination then particle
        out = remote & (owner == r)
        send = torch.unique(dest[out] * bm + key[out])
        send_counts = torch.bincount(send // bm, minlength=w)
        send_rows = (send % bm // m) * ml + (send % m - r * ml)
        # what it receives: its slots' remote ancestors, unique per source, sorted by source then particle
        src, k, a = owner[:, mine], key[:, mine], anc[:, mine]
        away = src != r
        recv = torch.unique(src[away] * bm + k[away])
        recv_counts = torch.bincount(recv // bm, minlength=w)
        index = torch.where(away, b * ml + torch.searchsorted(recv, src * bm + k), rows * ml + (a - r * ml))

        names = [name for name, v in pred.items() if v.shape[:2] == (b, ml) and v.stride(1) != 0]
        moving = [x] + [pred[name] for name in names]
        payload = torch.cat([_as_bytes(v.reshape(b * ml, -1)) for v in moving], dim=1)  # one row per particle
        outgoing = payload[send_rows].to(self.comm_device)
        incoming = torch.empty(recv.numel(), payload.shape[1], dtype=torch.uint8, device=self.comm_device)
        self._check()
        dist.all_to_all_single(incoming, outgoing, recv_counts.tolist(), send_counts.tolist(), group=self.group)
        self.traffic.moved += outgoing.numel()
        self.traffic.rows += outgoing.shape[0]
        self.traffic.exchanges += 1
        table = torch.cat([payload, incoming.to(payload.device)])[index.reshape(-1)]
        moved, offset = [], 0
        for v in moving:
            width = v[:1, :1].numel() * v.element_size()
            moved.append(_as_bytes(table[:, offset : offset + width]).view(v.dtype).reshape(v.shape))
            offset += width
        return moved[0], {**pred, **dict(zip(names, moved[1:]))}  # stride-0 and per-row entries stay as they are

    def _gather_out(self, t: Tensor, dim: int) -> Tensor | None:
        """``t`` concatenated over processes along ``dim``: on rank 0 only (``gather="rank0"``) or everywhere."""
        if self.gather == "all":
            out = self._all_gather(t, dim)
            self.traffic.output += t.numel() * t.element_size() * (self.world_size - 1)
            return out
        src = t.detach().to(self.comm_device).contiguous()
        parts = [torch.empty_like(src) for _ in range(self.world_size)] if self.rank == 0 else None
        self._check()
        dist.gather(src, parts, dst=dist.get_global_rank(self.group, 0) if self.group is not None else 0, group=self.group)
        if self.rank != 0:
            return None
        self.traffic.output += t.numel() * t.element_size() * (self.world_size - 1)
        return torch.cat(parts, dim=dim).to(t.device)

    def finish(self, x, log_w, ess_hist, resampled, log_z, lineages) -> WeightedSamples | None:
        x = self._gather_out(x, dim=1)
        out = None if x is None else WeightedSamples(x, normalize_log_weights(log_w), ess_hist, resampled, log_z, lineages)
        self._check()  # the last collective: after it, no process can fail alone
        return out


class IslandPlacement(ShardedPlacement):
    """Island resampling: each process resamples its own M / W particles of a row and keeps its share of
    the weight; only B x W numbers are exchanged per step. Unbiased for the evidence, with more variance
    than :class:`ShardedPlacement` (see the module's notes). Log-weights are this process's ``(B, M / W)``,
    normalised over all M; ``ancestors`` (callbacks, lineages) are indices within the island."""

    def start(self, b: int, local: int, device: torch.device) -> tuple[Tensor, Tensor]:
        m = self.total(local)
        return torch.full((b, local), -math.log(m), dtype=torch.float64, device=device), torch.arange(local, device=device).expand(b, local)

    def _island_sums(self, *vs: Tensor) -> Tensor:
        """``(W, len(vs), B)``: log sum of ``exp(v)`` over each island's particles, for each ``v: (B, M / W)``."""
        sums = self._all_gather(torch.stack([torch.logsumexp(v, dim=-1) for v in vs])[None], dim=0)
        self.traffic.weights += sums[0].numel() * (self.world_size - 1) * 8
        return sums

    def reweight(self, log_w: Tensor, log_g: Tensor) -> tuple[Tensor, Tensor]:
        v = log_w + log_g
        increment = torch.logsumexp(self._island_sums(v)[:, 0], dim=0)
        self.traffic.steps += 1
        return v - increment[:, None], increment

    def ess(self, log_w: Tensor) -> Tensor:
        total, squares = torch.logsumexp(self._island_sums(log_w, 2 * log_w), dim=0)
        return torch.exp(2 * total - squares)

    def resample(self, log_w, do, scheme: Resampling, streams: Streams, identity) -> tuple[Tensor, Tensor]:
        share = torch.logsumexp(log_w, dim=-1)  # (B,) this island's log share of the row's weight
        do = do & torch.isfinite(share)  # an island of zero weight stays dead
        safe = torch.where(do[:, None], log_w, torch.zeros_like(log_w))
        ancestors = torch.where(do[:, None], resample(safe, scheme, streams.local), identity)
        kept = (share - math.log(log_w.shape[1]))[:, None].expand_as(log_w)
        return ancestors, torch.where(do[:, None], kept, log_w)

    def select(self, x, pred, ancestors):
        return Placement.select(self, x, pred, ancestors)  # islands never exchange particles

    def finish(self, x, log_w, ess_hist, resampled, log_z, lineages) -> WeightedSamples | None:
        # islands share no ancestor: the distinct lineages of a row add up over islands
        lineages = self._all_gather(lineages[None], dim=0).sum(0)
        log_w = self._gather_out(log_w, dim=1)
        x = self._gather_out(x, dim=1)
        out = None if x is None else WeightedSamples(x, normalize_log_weights(log_w), ess_hist, resampled, log_z, lineages)
        self._check()
        return out


def _as_bytes(rows: Tensor) -> Tensor:
    """A fresh row-major copy of ``rows: (n, k)`` viewed as bytes ``(n, k * element_size)``."""
    return torch.empty(rows.shape, dtype=rows.dtype, device=rows.device).copy_(rows).view(torch.uint8)


def _peer_error(infos: list, world_size: int) -> Exception:
    """The first failed process's error, rebuilt here: its builtin exception type (else RuntimeError)."""
    rank, (module, name, message) = next((i, info) for i, info in enumerate(infos) if info is not None)
    cls = getattr(builtins, name, None) if module == "builtins" else None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls, message = RuntimeError, f"{module}.{name}: {message}"
    try:
        err = cls(f"{message} [raised on rank {rank} of {world_size}]")
    except Exception:  # noqa: BLE001 (an exception type that wants other arguments)
        err = RuntimeError(f"{module}.{name}: {message} [raised on rank {rank} of {world_size}]")
    err._smcdiff_peer = True  # already synchronised: guard() re-raises it without another collective
    return err


# ---- launching ----
def init_from_env(backend: str | None = None, timeout_s: float = 600.0) -> bool:
    """Initialise the default process group from torchrun's environment, unless it already is.

    Returns whether the run is distributed (world size > 1); with ``WORLD_SIZE`` unset or 1 nothing is
    initialised. ``backend``: default nccl when CUDA is available (each process on ``cuda:LOCAL_RANK``),
    else gloo. ``timeout_s`` bounds every collective (a process that dies without raising).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return True


def placement_from_env(mode: Literal["global", "island"] = "global", gather: Gather = "rank0") -> Placement:
    """The placement of this launch: sharded over the default process group when one with more than one
    process is initialised (see :func:`init_from_env`), else all particles in this process."""
    if mode not in ("global", "island"):
        raise ValueError(f"mode must be 'global' or 'island', got {mode!r}")
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Placement()
    return (ShardedPlacement if mode == "global" else IslandPlacement)(gather=gather)


def sharded_smc_sample(*args, mode: Literal["global", "island"] = "global", gather: Gather = "rank0", **kwargs) -> WeightedSamples | None:
    """:func:`smcdiff.smc_sample` over the processes of a torchrun launch (initialised here if needed).

    Arguments as :func:`smcdiff.smc_sample`; ``particles`` is M in all, a multiple of the world size.
    Returns the :class:`WeightedSamples` of all M particles on rank 0 (every rank with ``gather="all"``),
    None on the others. Without torchrun (or with one process) it is :func:`smcdiff.smc_sample`.
    """
    from .options import check_options
    from .smc import smc_sample

    init_from_env()
    options = check_options(kwargs.pop("options", None)).replace(placement=placement_from_env(mode, gather))
    return smc_sample(*args, options=options, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local_worker(rank, world_size, port, fn, args, results, timeout_s) -> None:
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
        try:
            results.put((rank, True, pickle.dumps(fn(*args))))
        finally:
            dist.destroy_process_group()
    except BaseException as err:  # noqa: BLE001 (reported to the parent, which raises)
        results.put((rank, False, f"{type(err).__name__}: {err}"))


def run_local(fn: Callable[..., Any], world_size: int, *args, timeout_s: float = 120.0) -> list:
    """Run ``fn(*args)`` in ``world_size`` new processes joined in a gloo group on 127.0.0.1; their results by rank.

    For tests and benchmarks without torchrun: ``fn`` must be importable (a module-level function) and
    its result picklable. Raises ``RuntimeError`` with every failed process's error, and
    ``TimeoutError`` (after stopping the processes) when they do not finish in ``timeout_s``.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_local_worker, args=(r, world_size, port, fn, args, results, timeout_s)) for r in range(world_size)]
    for p in procs:
        p.start()
    got: dict[int, tuple[bool, Any]] = {}
    try:
        deadline, dead_since = _now() + timeout_s, None
        while len(got) < world_size:
            try:
                rank, ok, value = results.get(timeout=0.5)
                got[rank] = (ok, value)
                continue
            except queue_module.Empty:
                pass
            dead = [r for r, p in enumerate(procs) if r not in got and p.exitcode is not None]
            if dead:  # a process that crashed (no Python exception) reports nothing: give its result 2 s to arrive
                dead_since = dead_since or _now()
                if _now() - dead_since > 2.0:
                    for r in dead:
                        got[r] = (False, f"exited with code {procs[r].exitcode} without a result")
            if _now() >= deadline:
                raise TimeoutError(f"run_local: {world_size - len(got)} of {world_size} processes did not finish in {timeout_s:g} s")
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.kill()
                p.join()
    failed = [f"rank {r}: {v}" for r, (ok, v) in sorted(got.items()) if not ok]
    if failed:
        raise RuntimeError("run_local: " + "; ".join(failed))
    return [pickle.loads(got[r][1]) for r in range(world_size)]


def _now() -> float:
    import time

    return time.monotonic()
