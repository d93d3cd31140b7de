"""Episodic leave-one-task-out meta-training, in one process or under torchrun (DDP).

Recipe (NOTES §1): episodes of a query and K supports from the same training task (never
the query itself, normal images only); loss = SSD + lambda * TSD; Adam (lr 1e-4, betas
(0.5, 0.999)); only the student decoder and the L2W projections learn.

The teacher is frozen and in eval mode, so its features of the (fixed) training images
are computed once and reused in every epoch: mathematically the same episodes, without
re-running the frozen network on every step.

Outputs in ``out_dir``:
    best.safetensors      checkpoint chosen on validation data from the training tasks
    last_state.safetensors  everything ``--resume`` needs (weights, Adam state, history)
    epochs.csv, steps.csv   losses per epoch / per step, validation metrics per epoch
    settings.json          the run's settings

Distributed: under torchrun every rank takes a contiguous slice of each global batch
(batch_size must divide by world size x accumulate); gradients are averaged by DDP. On
GPUs BatchNorm is synchronised across ranks; on CPUs (gloo) it cannot be, and each rank
normalises over its own slice, exactly as a single process with ``accumulate`` =
world size does with its micro-batches.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..data.datasets import load_normal_images, task_files
from ..data.episodes import EpisodeBatch, check_pools, epoch_batches
from ..errors import InputError, OutputError
from ..io.atomic import write_text_atomic
from ..losses import d24fad_loss
from ..models.d24fad import D24FADModel, EpisodeOutputs
from ..progress import Progress, ProgressMode
from .state import load_state, save_state
from .validation import ValidationTask, build_validation_task, split_pool, validate

BEST_NAME = "best.safetensors"
STATE_NAME = "last_state.safetensors"
EPOCH_COLUMNS = ("epoch", "steps", "loss", "ssd", "tsd", "val_image_auroc", "val_pixel_auroc", "seconds", "best")
STEP_COLUMNS = ("epoch", "step", "shots", "loss", "ssd", "tsd")


@dataclass(frozen=True)
class TrainSettings:
    data_root: str
    out_dir: str
    model: ModelConfig
    holdout: Optional[str] = None
    tasks: Optional[tuple[str, ...]] = None
    epochs: int = 30
    batch_size: int = 16
    shots: tuple[int, ...] = (2, 4, 8)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    accumulate: int = 1
    steps_per_epoch: Optional[int] = None
    val_fraction: float = 0.2
    val_shots: int = 4
    seed: int = 0
    window: str = "auto"
    device: str = "auto"
    allow_download: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"--epochs {self.epochs}: must be at least 1")
        if self.accumulate < 1:
            raise InputError(f"--accumulate {self.accumulate}: must be at least 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise InputError(f"--steps-per-epoch {self.steps_per_epoch}: must be at least 1")
        if self.lr <= 0:
            raise InputError(f"--lr {self.lr}: must be positive")

    def fingerprint(self) -> dict:
        """What a resumed run must share with the interrupted one (not epochs, paths, device)."""
        record = asdict(self)
        for key in ("out_dir", "epochs", "device", "data_root"):
            record.pop(key)
        record["model"] = self.model.to_dict()
        return json.loads(json.dumps(record))


@dataclass
class TrainResult:
    out_dir: Path
    best_checkpoint: Path
    state: Path
    epochs_log: Path
    best: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- distribution


@dataclass
class DistributedContext:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistributedContext:
    """Single process unless torchrun set WORLD_SIZE > 1 (then gloo on CPU, nccl on GPU)."""
    from ..device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext(0, 1, resolve_device(device_name))
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wants_gpu = device_name in ("auto", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if wants_gpu else torch.device("cpu")
    if wants_gpu:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wants_gpu else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), device)


def _barrier(ctx: DistributedContext) -> None:
    if ctx.world > 1:
        import torch.distributed as dist

        dist.barrier()


# ----------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    names: list[str]
    pools: list[np.ndarray]  # per task: normal images used for episodes [n, 3, S, S]
    validation: list[ValidationTask]
    digest: str  # SHA256 of the training files' names and bytes: a resumed run must see the same data


def training_task_names(root: str, holdout: Optional[str], tasks: Optional[tuple[str, ...]]) -> list[str]:
    """The tasks to train on. The held-out task is recognised by its folder name only:
    nothing inside it is listed, opened or read."""
    names = sorted(os.listdir(root)) if Path(root).is_dir() else []
    if holdout is not None and holdout not in names:
        raise InputError(f"--holdout {holdout}: no such task folder in {root}")
    if tasks:
        chosen = list(tasks)
        if holdout in chosen:
            raise InputError(f"--holdout {holdout} is also listed in --tasks")
        available = set(discover_tasks_excluding(root, holdout))
        unknown = [t for t in chosen if t not in available]
        if unknown:
            raise InputError(f"--tasks: no TASK/train/good folder for {', '.join(unknown)} in {root}")
        return chosen
    chosen = discover_tasks_excluding(root, holdout)
    if not chosen:
        raise InputError(f"no training tasks left in {root} once {holdout} is held out")
    return chosen


def discover_tasks_excluding(root: str, holdout: Optional[str]) -> list[str]:
    root_path = Path(root)
    if not root_path.is_dir():
        raise InputError(f"data root {root} is not a folder")
    return sorted(
        name for name in os.listdir(root_path) if name != holdout and (root_path / name / "train" / "good").is_dir()
    )


def load_training_data(settings: TrainSettings, build_validation: bool) -> TrainingData:
    names = training_task_names(settings.data_root, settings.holdout, settings.tasks)
    size = settings.model.image_size
    pools, validation = [], []
    digest = hashlib.sha256()
    for name in names:
        files = task_files(settings.data_root, name, with_test=False)
        for path in files.train_good:
            digest.update(f"{name}/{path.name}\n".encode("utf-8"))
            digest.update(path.read_bytes())
        images = load_normal_images(files.train_good, size, settings.window)
        train_idx, val_idx = split_pool(len(images), settings.val_fraction, settings.seed, name)
        pools.append(images[train_idx])
        if build_validation and len(val_idx):
            validation.append(
                build_validation_task(name, images[train_idx], images[val_idx], settings.val_shots, settings.seed)
            )
    check_pools([len(p) for p in pools], settings.shots, names)
    return TrainingData(names, pools, validation, digest.hexdigest())


class TeacherCache:
    """Frozen-teacher features of every episode image (all levels incl. the deepest)."""

    def __init__(self, model: D24FADModel, pools: list[np.ndarray], device: torch.device, batch_size: int = 32):
        sizes = [len(p) for p in pools]
        self.offsets = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        images = torch.from_numpy(np.concatenate(pools))
        parts = []
        model.teacher.eval()
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                parts.append([f.float() for f in model.encode(images[start : start + batch_size].to(device))])
        self.levels = [torch.cat([p[level] for p in parts]).clone() for level in range(len(parts[0]))]

    def gather(self, tasks: np.ndarray, indices: np.ndarray) -> list[torch.Tensor]:
        index = torch.from_numpy(self.offsets[tasks] + indices).to(self.levels[0].device)
        return [level[index] for level in self.levels]


class EpisodeNetwork(nn.Module):
    """The trainable part of one training step (student + L2W), the module DDP wraps."""

    def __init__(self, model: D24FADModel):
        super().__init__()
        self.student = model.student
        self.l2w = model.l2w
        self.use_l2w = model.config.use_l2w

    def forward(self, teacher_query: list[torch.Tensor], support_deepest: torch.Tensor, shots: int) -> EpisodeOutputs:
        student_query = self.student(teacher_query[-1])
        batch = student_query[0].shape[0]
        student_support = [f.unflatten(0, (batch, shots)) for f in self.student(support_deepest)]
        references, weights = self.l2w(student_query, student_support, uniform=not self.use_l2w)
        return EpisodeOutputs(teacher_query[:-1], student_query, references, weights)


# ----------------------------------------------------------------------------- steps


def train_step(
    network: nn.Module,
    cache: TeacherCache,
    batch: EpisodeBatch,
    optimizer: torch.optim.Optimizer,
    ctx: DistributedContext,
    accumulate: int,
    loss_lambda: float,
) -> np.ndarray:
    """One optimiser step on this rank's share of ``batch``; returns the global mean
    (loss, ssd, tsd)."""
    local = batch.part(ctx.rank, ctx.world)
    optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(3, dtype=torch.float64)
    for micro_index in range(accumulate):
        micro = local.part(micro_index, accumulate)
        teacher_query = cache.gather(micro.tasks, micro.queries)
        support_tasks = np.repeat(micro.tasks, micro.shots)
        support_deepest = cache.gather(support_tasks, micro.supports.ravel())[-1]
        last = micro_index == accumulate - 1
        sync = contextlib.nullcontext() if last or not hasattr(network, "no_sync") else network.no_sync()
        with sync:
            terms = d24fad_loss(network(teacher_query, support_deepest, micro.shots), loss_lambda)
            (terms.total / accumulate).backward()
        totals += torch.tensor([terms.total.item(), terms.ssd.item(), terms.tsd.item()], dtype=torch.float64) / accumulate
    if ctx.world > 1:
        import torch.distributed as dist

        dist.all_reduce(totals)
        totals /= ctx.world
    optimizer.step()
    return totals.numpy()


# ----------------------------------------------------------------------------- logs


def _csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


SELECTION_KEYS = ("val_image_auroc", "val_pixel_auroc")  # compared in this order


def _selection_key(row: dict) -> tuple[float, ...]:
    """Validation metrics of an epoch as a tuple (missing or NaN counts as worst)."""
    return tuple(-np.inf if row.get(k) is None or np.isnan(row[k]) else row[k] for k in SELECTION_KEYS)


def _is_better(candidate: dict, best: Optional[dict]) -> bool:
    """Strictly better validation result. Without validation data (--val-fraction 0) the
    latest epoch is the model."""
    if best is None or not any(k in candidate for k in SELECTION_KEYS):
        return True
    return _selection_key(candidate) > _selection_key(best)


# ----------------------------------------------------------------------------- the loop


def train(settings: TrainSettings, resume: bool = False, progress: ProgressMode = "bar") -> TrainResult:
    ctx = init_distributed(settings.device)
    try:
        return _train(settings, resume, progress, ctx)
    finally:
        if ctx.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _prepare_out_dir(out_dir: Path, resume: bool) -> None:
    state = out_dir / STATE_NAME
    if resume and not state.is_file():
        raise InputError(f"--resume: no training state {state} to resume from")
    if not resume and state.exists():
        raise OutputError(f"{out_dir} already holds a training run; use --resume or another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out_dir}: {exc}") from exc


def _train(settings: TrainSettings, resume: bool, progress: ProgressMode, ctx: DistributedContext) -> TrainResult:
    out_dir = Path(settings.out_dir)
    if ctx.is_main:
        _prepare_out_dir(out_dir, resume)
    if settings.batch_size % (ctx.world * settings.accumulate):
        raise InputError(
            f"--batch {settings.batch_size} must divide by world size {ctx.world} x --accumulate {settings.accumulate}"
        )
    data = load_training_data(settings, build_validation=ctx.is_main)
    torch.manual_seed(settings.seed)
    model = D24FADModel(settings.model, allow_download=settings.allow_download).to(ctx.device)
    cache = TeacherCache(model, data.pools, ctx.device)
    network: nn.Module = EpisodeNetwork(model)
    if ctx.world > 1:
        if ctx.device.type == "cuda":
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
            model.student = network.student
        network = nn.parallel.DistributedDataParallel(network, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.lr, betas=settings.betas)

    record = {"epoch": 0, "best": None, "epochs": [], "steps": [], "fingerprint": settings.fingerprint(),
              "data_digest": data.digest}
    if resume:
        record = load_state(out_dir / STATE_NAME, model, optimizer)
        if record.get("data_digest") != data.digest:
            raise InputError(f"--resume: the training images in {settings.data_root} changed since the interrupted run")
        if record["fingerprint"] != settings.fingerprint():
            differing = sorted(k for k in settings.fingerprint() if record["fingerprint"].get(k) != settings.fingerprint()[k])
            raise InputError(f"--resume: settings differ from the interrupted run ({', '.join(differing)})")
    if ctx.is_main:
        write_text_atomic(out_dir / "settings.json", json.dumps(asdict(settings), indent=2, default=str) + "\n")

    pool_sizes = [len(p) for p in data.pools]
    steps = len(epoch_batches(pool_sizes, settings.shots, settings.batch_size, settings.seed, 0))
    if steps == 0:
        raise InputError(f"--batch {settings.batch_size} is larger than the {sum(pool_sizes)} training images")
    steps = min(steps, settings.steps_per_epoch or steps)
    remaining = max(0, settings.epochs - record["epoch"])
    bar = Progress(remaining * steps, "training", progress if ctx.is_main else "none")
    try:
        for epoch in range(record["epoch"] + 1, settings.epochs + 1):
            started = time.perf_counter()
            network.train()
            model.train()
            losses = []
            batches = epoch_batches(pool_sizes, settings.shots, settings.batch_size, settings.seed, epoch)[:steps]
            for step, batch in enumerate(batches):
                loss = train_step(network, cache, batch, optimizer, ctx, settings.accumulate, settings.model.loss_lambda)
                losses.append(loss)
                record["steps"].append({"epoch": epoch, "step": step, "shots": batch.shots,
                                        "loss": float(loss[0]), "ssd": float(loss[1]), "tsd": float(loss[2])})
                bar.update((epoch - 1 - (settings.epochs - remaining)) * steps + step + 1, loss=f"{loss[0]:.4f}")
            mean_loss = np.mean(losses, axis=0)
            row = {"epoch": epoch, "steps": len(batches), "loss": float(mean_loss[0]), "ssd": float(mean_loss[1]),
                   "tsd": float(mean_loss[2])}
            if ctx.is_main:
                row.update(validate(model, data.validation) if data.validation else {})
                row["seconds"] = round(time.perf_counter() - started, 3)
                row["best"] = _is_better(row, record["best"])
                record["epochs"].append(row)
                record["epoch"] = epoch
                if row["best"]:
                    record["best"] = row
                    _save_best(out_dir, model, settings, data, row)
                save_state(out_dir / STATE_NAME, model, optimizer, record)
                write_text_atomic(out_dir / "epochs.csv", _csv_text(record["epochs"], EPOCH_COLUMNS))
                write_text_atomic(out_dir / "steps.csv", _csv_text(record["steps"], STEP_COLUMNS))
            else:
                record["epoch"] = epoch
            _barrier(ctx)
    finally:
        bar.close()
    return TrainResult(out_dir, out_dir / BEST_NAME, out_dir / STATE_NAME, out_dir / "epochs.csv", record["best"] or {})


def _save_best(out_dir: Path, model: D24FADModel, settings: TrainSettings, data: TrainingData, row: dict) -> None:
    from ..checkpoint import save_checkpoint

    training_info = {
        "trained_on": data.names,
        "data_digest": data.digest,
        "held_out": settings.holdout,
        "data_root": str(settings.data_root),
        "selected_epoch": row["epoch"],
        "selected_on": "validation images carved from the training tasks (normal + synthetic lesions)",
        "validation": {k: row.get(k) for k in ("val_image_auroc", "val_pixel_auroc")},
        "recipe": settings.fingerprint(),
    }
    was_training = model.training
    save_checkpoint(out_dir / BEST_NAME, model.eval(), training_info)
    model.train(was_training)
