"""Training: one step loop, one learning-rate schedule, one weight average, one resumable state.

:func:`fit` minimises ``loss_fn(step)`` with AdamW and is used by every trainer of the project (the
multiscale and uniform models, the CDE / CDiffE / CMDE estimators, ``examples/train_digits.py`` and
``examples/train_classifier.py``). Each step k = 0, 1, ...:

1. set the learning rate :func:`learning_rate` (k): linear warm-up, then constant or cosine;
2. draw the loss (the caller's ``loss_fn`` draws its batch, times and noise from its generator);
3. backpropagate, clip the gradient norm of each module in ``clipped`` to 1, take the AdamW step;
4. update the :class:`EMA` of the weights with decay ``min(ema_decay, (1 + k) / (10 + k))``.

The loop stops after ``steps`` steps or ``max_seconds`` seconds of training (whichever comes first),
records the smoothed loss every :data:`LOG_EVERY` steps and at the end, and every
``checkpoint_every`` steps and at the end writes the resumable state and calls the caller's hook.

Resumable state, without pickle: ``state.safetensors`` (model, EMA, the optimiser's per-parameter
moments, the ``torch.Generator`` state) and ``state.json`` (step, seconds, loss history, the
caller's configuration and metadata) in one folder, both written to temporary names first and then
renamed, so that an interrupted save leaves the previous state intact.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "Schedule",
    "Clock",
    "LOG_EVERY",
    "TrainResult",
    "learning_rate",
    "EMA",
    "fit",
    "save_training_state",
    "read_training_meta",
    "load_training_state",
]

Schedule = Literal["constant", "cosine"]
Clock = Literal["wall", "process"]
LOG_EVERY = 50
"""Steps between two entries of the loss history."""
TENSORS_NAME = "state.safetensors"
META_NAME = "state.json"


@dataclass
class TrainResult:
    """Outcome of a training run.

    Attributes
    ----------
    model : the weight average (:class:`EMA`) in eval mode, or the trained model when no average is kept.
    history : ``[(step, smoothed loss)]`` every :data:`LOG_EVERY` steps and at the last step.
    steps : steps taken in total (including those before a resume).
    seconds : training seconds in total, on the run's clock (checkpoint writing excluded).
    """

    model: nn.Module
    history: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def learning_rate(step: int, peak: float, warmup: int, schedule: Schedule = "constant", total: int | None = None) -> float:
    """The learning rate of step ``step`` (0-based): ``peak`` times

    - ``(step + 1) / warmup`` during the warm-up (``step < warmup``), then
    - ``1`` (``schedule="constant"``, for budgets in wall-clock time), or
    - ``(1 + cos(pi min(1, (step - warmup) / (total - warmup)))) / 2`` (``schedule="cosine"``, 0 at ``total``).
    """
    if step < warmup:
        factor = (step + 1) / warmup
    elif schedule == "constant":
        factor = 1.0
    elif schedule == "cosine":
        if total is None:
            raise ValueError("total must be given for the cosine schedule")
        factor = 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    else:
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    return peak * factor


class EMA:
    """Exponential moving average of a model's parameters, with the usual warm-up of the decay.

    Update k (0-based, k = the training step) sets ``average <- d_k average + (1 - d_k) model`` with
    ``d_k = min(decay, (1 + k) / (10 + k))``, so that the early weights are forgotten quickly.

    Parameters
    ----------
    model : its parameters start the average (a deep copy, gradients off, is kept as :attr:`module`).
    decay : the long-run decay, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """d_k = ``min(decay, (1 + k) / (10 + k))``."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s parameters with the decay of step ``step``."""
        weight = 1.0 - self.decay_at(step)
        for averaged, current in zip(self.module.parameters(), model.parameters()):
            averaged.lerp_(current, weight)


def save_training_state(
    path: str | Path,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
    meta: dict[str, Any],
) -> None:
    """Write the training state to the folder ``path`` (created if needed); ``meta`` must be JSON-serialisable."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    for i, state in optimizer.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    if generator is not None:
        tensors["generator"] = generator.get_state()
    save_file(tensors, str(path / f"{TENSORS_NAME}.tmp"))
    (path / f"{META_NAME}.tmp").write_text(json.dumps(meta))
    (path / f"{TENSORS_NAME}.tmp").replace(path / TENSORS_NAME)
    (path / f"{META_NAME}.tmp").replace(path / META_NAME)


def read_training_meta(path: str | Path) -> dict[str, Any]:
    """The JSON part of a training state, e.g. to check that it belongs to the model before loading."""
    path = Path(path)
    if not (path / TENSORS_NAME).is_file() or not (path / META_NAME).is_file():
        raise ValueError(f"no training state in {str(path)!r} (expected {TENSORS_NAME} and {META_NAME})")
    try:
        return json.loads((path / META_NAME).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path / META_NAME} is not valid JSON: {err}") from None


def load_training_state(
    path: str | Path,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """Restore a state written by :func:`save_training_state` in place and return its ``meta``."""
    meta = read_training_meta(path)
    tensors = load_file(str(Path(path) / TENSORS_NAME))
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        ema.load_state_dict({k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")})
    moments: dict[int, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            moments.setdefault(int(i), {})[name] = v
    opt_state = optimizer.state_dict()
    opt_state["state"] = moments
    optimizer.load_state_dict(opt_state)
    if generator is not None and "generator" in tensors:
        generator.set_state(tensors["generator"])
    return meta


def _check_budget(steps: int | None, max_seconds: float | None, warmup: int, checkpoint_every: int) -> None:
    if steps is None and max_seconds is None:
        raise ValueError("steps or max_seconds must be given")
    for name, value in (("steps", steps), ("checkpoint_every", checkpoint_every)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")


def fit(
    model: nn.Module,
    loss_fn: Callable[[int], Tensor],
    *,
    steps: int | None,
    lr: float,
    weight_decay: float,
    max_seconds: float | None = None,
    warmup: int = 0,
    schedule: Schedule = "constant",
    ema_decay: float | None = None,
    clipped: Sequence[nn.Module] = (),
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str = "train",
    state_dir: str | Path | None = None,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    checkpoint: Callable[[nn.Module, int, float], None] | None = None,
    checkpoint_every: int = 1000,
    clock: Clock = "wall",
) -> TrainResult:
    """Minimise ``loss_fn(step)`` over ``model``'s parameters (module docstring); ``model`` is trained in place.

    Parameters
    ----------
    model : the trained module (left in eval mode at the end).
    loss_fn : ``loss_fn(step) -> Tensor``; draws its own batch; a loss with several entries (one per
        network) is summed.
    steps, max_seconds : stop at whichever comes first (at least one must be given); ``steps`` is also
        the end of the cosine schedule, which therefore needs it.
    lr, weight_decay : peak learning rate and decoupled weight decay of AdamW.
    warmup, schedule : see :func:`learning_rate`.
    ema_decay : keep an :class:`EMA` with this decay and return it; None returns ``model`` itself.
    clipped : modules whose gradients are each clipped to norm 1 before the step.
    generator : the generator ``loss_fn`` draws from; its state is part of the saved training state.
    progress, desc : tqdm bar and its label.
    state_dir : folder for the resumable state, written every ``checkpoint_every`` steps and at the end.
    resume : continue from ``state_dir`` (reproduces the uninterrupted run when stopping by ``steps``).
    config : JSON description of what is trained, stored with the state; resuming a state written
        with another one is an error.
    meta : further JSON-serialisable entries stored with the state.
    checkpoint : called as ``checkpoint(averaged_model, step, smoothed_loss)`` every
        ``checkpoint_every`` steps and at the end.
    clock : ``"wall"`` (``time.perf_counter``) or ``"process"`` (``time.process_time``, the CPU time of
        this process: with one thread the time the loop would take on an idle core).

    Returns
    -------
    TrainResult
    """
    _check_budget(steps, max_seconds, warmup, checkpoint_every)
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if schedule == "cosine" and steps is None:
        raise ValueError("steps must be given for the cosine schedule")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if resume and state_dir is None:
        raise ValueError("resume needs state_dir")
    if clock not in ("wall", "process"):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    ema = None if ema_decay is None else EMA(model, ema_decay)
    averaged = model if ema is None else ema.module
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    step, seconds, history = 0, 0.0, []
    path = None if state_dir is None else Path(state_dir)
    if resume:
        if read_training_meta(path).get("config") != config:
            raise ValueError(f"the training state in {path} was written for another model configuration")
        saved = load_training_state(path, model, None if ema is None else ema.module, opt, generator)
        step, seconds, history = int(saved["step"]), float(saved["seconds"]), [tuple(h) for h in saved["history"]]

    def finished() -> bool:
        return (steps is not None and step >= steps) or (max_seconds is not None and seconds >= max_seconds)

    def save() -> None:
        if path is not None:
            state = dict(step=step, seconds=seconds, history=history, config=config, clock=clock, **(meta or {}))
            save_training_state(path, model, None if ema is None else ema.module, opt, generator, state)
        if checkpoint is not None:
            checkpoint(averaged, step, running)

    model.train()
    running = history[-1][1] if history else float("nan")
    bar = tqdm(total=steps, initial=step, desc=desc, disable=not progress, dynamic_ncols=True, mininterval=2.0)
    while not finished():
        start = now()
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, lr, warmup, schedule, steps)
        loss = loss_fn(step).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for module in clipped:
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        if ema is not None:
            ema.update(model, step)
        step += 1
        value = loss.item()
        running = value if math.isnan(running) else 0.98 * running + 0.02 * value
        seconds += now() - start
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        done = finished()
        if step % LOG_EVERY == 0 or done:
            history.append((step, running))
        if step % checkpoint_every == 0 or done:
            save()
    bar.close()
    model.eval()
    return TrainResult(averaged.eval(), history, step, seconds)
