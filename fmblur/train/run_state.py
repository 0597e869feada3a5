"""What every training run shares: resumable checkpoints, a per-epoch CSV, a PNG of the curves, and
stopping cleanly at the next step on SIGTERM/Ctrl-C (the run then resumes from that step)."""

from __future__ import annotations

import csv
import json
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from fmblur.atomic import atomic_target
from fmblur.provenance import provenance
from fmblur.results import TRAINING_DIR

CHECKPOINT = "last.pt"
HISTORY = "history.csv"
CURVES = "curves.png"


class StopRequested:
    """Set by SIGTERM or SIGINT; the training loop checks it between steps, saves and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequested:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: workers leave SIGTERM/SIGINT to the training process, which saves and stops
    them; a signal to the whole process group (a session ending, Ctrl-C) would otherwise kill a worker mid-batch
    and crash the run before it saves."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def epoch_chunks(seed: int, epoch: int, samples: int, batch_size: int, first_step: int, steps: int) -> list[list[int]]:
    """The sample indices of each remaining step of an epoch: one shuffle per (seed, epoch), so a resumed run
    continues the same order from `first_step`."""
    order = np.random.default_rng([seed, epoch]).permutation(samples)
    return [[int(i) for i in order[step * batch_size : (step + 1) * batch_size]] for step in range(first_step, steps)]


def batch_loader(
    chunks: list[list[int]],
    make_batch: Callable[[list[int]], Any],
    workers: int,
    worker_init_fn: Callable[[int], None] = ignore_stop_signals,
) -> Iterable:
    """`make_batch(chunk)` for each chunk, prepared by `workers` DataLoader processes ahead of the training step
    (0: in this process, one at a time)."""
    if workers <= 0:
        return (make_batch(chunk) for chunk in chunks)
    return torch.utils.data.DataLoader(
        chunks, batch_size=None, collate_fn=make_batch, num_workers=workers, worker_init_fn=worker_init_fn
    )


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    """Atomically write the run's state (model, optimiser, scheduler, epoch, step, RNG) to run_dir/last.pt."""
    target = run_dir / CHECKPOINT
    with atomic_target(target) as temporary:
        torch.save(state, temporary)
    return target


def load_checkpoint(run_dir: Path) -> dict | None:
    """The run's last state, or None for a new run. Tensors and plain containers only (weights_only=True)."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def append_history(run_dir: Path, row: dict[str, float]) -> None:
    """One CSV row per epoch; the header comes from the first row."""
    path = run_dir / HISTORY
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_history(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / HISTORY
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def truncate_history(run_dir: Path, epochs_done: int) -> None:
    """Drop rows of epochs the checkpoint does not include (the run stopped after logging, before saving)."""
    rows = [row for row in read_history(run_dir) if row.get("epoch", 0) <= epochs_done]
    path = run_dir / HISTORY
    if path.is_file():
        path.unlink()
    for row in rows:
        append_history(run_dir, {k: (int(v) if k == "epoch" else v) for k, v in row.items()})


def publish_history(run_dir: Path, name: str, target_dir: Path = TRAINING_DIR) -> Path | None:
    """Copy the run's per-epoch history to docs/results/training/<name>.json with the run's config and the
    provenance of the export, so the app's Models tab can draw the training curves of the shipped weights."""
    rows = read_history(run_dir)
    if not rows:
        return None
    config_path = run_dir / "config.json"
    record = {
        "detector": name,
        "run": run_dir.name,
        "provenance": provenance(),
        "config": json.loads(config_path.read_text()) if config_path.is_file() else {},
        "rows": rows,
    }
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{name}.json"
    with atomic_target(target, suffix=".json") as temporary:
        temporary.write_text(json.dumps(record, indent=1) + "\n")
    return target


def plot_history(run_dir: Path, title: str) -> Path | None:
    """run_dir/curves.png: every logged column against the epoch, losses and metrics in separate panels."""
    rows = read_history(run_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [k for k in rows[0] if k != "epoch"]
    losses = [k for k in columns if "loss" in k]
    metrics = [k for k in columns if k not in losses and k not in ("lr", "seconds")]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [row["epoch"] for row in rows]
    for axis, keys, label in ((axes[0], losses, "loss"), (axes[1], metrics, "validation")):
        for key in keys:
            axis.plot(epochs, [row.get(key, float("nan")) for row in rows], marker=".", label=key)
        axis.set_xlabel("epoch")
        axis.set_title(label)
        if keys:
            axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    target = run_dir / CURVES
    with atomic_target(target, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    return target


def resume_config(
    run_dir: Path, config: Any, changeable: tuple[str, ...] = ("epochs", "save_every")
) -> tuple[Any, dict | None]:
    """(config, checkpoint state) for a run folder: a new run keeps `config`; an existing one must have been
    started with the same configuration except the `changeable` fields (the run's length, how often it saves)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    state = load_checkpoint(run_dir)
    if state is not None:
        # Fields added since the run started take their defaults.
        saved = {**json.loads(json.dumps(asdict(type(config)()))), **json.loads(config_path.read_text())}
        given = json.loads(json.dumps(asdict(config)))  # tuples as lists, as the saved file has them
        kept = {name: given[name] for name in changeable}
        if {**saved, **kept} != given:
            raise ValueError(f"{run_dir} holds a run with another configuration ({config_path}); use a new --out")
        config = type(config)(**{**saved, **kept})
    config_path.write_text(json.dumps(asdict(config), indent=2))
    return config, state


def restore(state: dict | None, parts: dict[str, Any], run_dir: Path, epochs: int, log) -> tuple[int, int]:
    """(epoch, step) to start from: 0, 0 for a new run; else the checkpoint's, after loading each of `parts`
    (model, optimiser, scheduler...) from it and dropping history rows the checkpoint does not include."""
    if state is None:
        return 0, 0
    for key, part in parts.items():
        part.load_state_dict(state[key])
    epoch, step = int(state["epoch"]), int(state["step"])
    truncate_history(run_dir, epoch)
    log(f"run already has {epoch} epochs" if epoch >= epochs else f"resumed at epoch {epoch + 1}, step {step}")
    return epoch, step


class EpochSteps(NamedTuple):
    """What one trainer does in an epoch: `batches(epoch, first_step)` yields the epoch's batches from
    `first_step` on, `train_step(batch, global_step)` makes one optimiser step and returns its loss terms,
    `end_of_epoch(epoch)` returns metrics for the history row (validation, learning rate)."""

    steps_per_epoch: int
    batches: Callable[[int, int], Iterable]
    train_step: Callable[[Any, int], dict[str, float]]
    end_of_epoch: Callable[[int], dict[str, float]] = lambda epoch: {}


def run_epochs(
    run_dir: Path,
    config: Any,
    parts: dict[str, Any],
    state: dict | None,
    steps: EpochSteps,
    title: str = "training",
    log: Callable[[str], None] = print,
    progress_factory: Callable | None = None,
) -> Path:
    """The loop every trainer here shares: `parts` (model, optimiser...) restored from the checkpoint `state`
    when there is one, then `config.epochs` epochs of steps, a checkpoint every `config.save_every` steps, at each
    epoch's end and on SIGTERM/Ctrl-C (the same command then resumes), and per epoch a history row (mean loss
    terms, `steps.end_of_epoch`'s metrics, seconds) and redrawn curves. `parts` are saved by name."""
    epochs, save_every, steps_per_epoch = config.epochs, config.save_every, steps.steps_per_epoch
    batches, train_step, end_of_epoch = steps.batches, steps.train_step, steps.end_of_epoch

    def snapshot(epoch: int, step: int) -> dict:
        return {**{key: part.state_dict() for key, part in parts.items()}, "epoch": epoch, "step": step}

    epoch, step = restore(state, parts, run_dir, epochs, log)
    with StopRequested() as stop:
        while epoch < epochs:
            bar = progress_factory(f"epoch {epoch + 1}/{epochs}", steps_per_epoch) if progress_factory else None
            for _ in range(step if bar is not None else 0):
                bar()
            sums: dict[str, float] = {}
            started, done_here = time.perf_counter(), 0
            for batch in batches(epoch, step):
                if stop.requested:
                    save_checkpoint(run_dir, snapshot(epoch, step))
                    log(f"stopped at epoch {epoch + 1}, step {step}; run the same command to resume")
                    return run_dir / CHECKPOINT
                try:
                    losses = train_step(batch, epoch * steps_per_epoch + step)
                except FloatingPointError as error:
                    raise FloatingPointError(f"{error} at epoch {epoch + 1}, step {step}") from None
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + value
                step += 1
                done_here += 1
                if bar is not None:
                    bar()
                if step % save_every == 0:
                    save_checkpoint(run_dir, snapshot(epoch, step))
            metrics = end_of_epoch(epoch)
            epoch, step = epoch + 1, 0
            means = {name: value / max(1, done_here) for name, value in sums.items()}
            row = {"epoch": epoch, "loss": sum(means.values()), **means, **metrics}
            row["seconds"] = round(time.perf_counter() - started, 1)
            append_history(run_dir, row)
            save_checkpoint(run_dir, snapshot(epoch, step))
            plot_history(run_dir, title)
            log(
                f"epoch {epoch}: loss {row['loss']:.4f}"
                + "".join(f", {k} {v:.4f}" for k, v in {**means, **metrics}.items())
            )
    return run_dir / CHECKPOINT
