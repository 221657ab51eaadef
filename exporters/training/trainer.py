"""The multi-task trainer of the default weights.

Seeded, CPU-friendly (2 threads), resumable: the full training state (model, optimiser, step, wall
time spent, RNG states) is written atomically every ``save_every`` steps to ``workdir/last.pt`` and
``resume=True`` continues from it. The learning rate follows a linear warm-up and a cosine decay
over the run's progress, where progress is the larger of steps done / steps and, when a time budget
is given, minutes spent / budget: on a shared machine the run then finishes its schedule (and
ships a checkpoint) within the budget even when it gets fewer steps than asked for.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from exporters.training.data import Batch, ScenePool, build_pool, sample_batch
from exporters.training.losses import LossWeights, depth_loss, detection_loss, segmentation_loss
from serving.errors import SpecError
from serving.spec import DEFAULT_INPUT_HW

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    network: str
    out: Path  # the checkpoint written at the end; metadata goes next to it as .json
    workdir: Path = Path("/tmp/percept-train")
    input_hw: tuple[int, int] = DEFAULT_INPUT_HW
    steps: int = 3000
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    time_budget_min: float | None = None
    seed: int = 0
    pool_size: int = 1200
    cache_dir: Path | None = Path("/tmp/percept-pool")
    save_every: int = 100
    resume: bool = False
    init_from: Path | None = None  # start from another checkpoint's matching weights
    threads: int = 2
    eval_scenes: int = 200
    progress: bool = True
    augment: bool = True
    stop_at: int | None = None  # leave after this step (state saved), to split a run into sessions
    pool_lidar: bool = True  # render LiDAR into the pool even for camera nets: one cache serves both
    # train only the modules with these names (e.g. "depth_head"); the rest is frozen, BN statistics
    # included, so the outputs of the other heads stay bit for bit those of --init-from
    train_only: tuple[str, ...] = ()
    weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        h, w = self.input_hw
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise SpecError(f"input size {h}x{w} must be positive multiples of 32")
        if self.steps < 1 or self.batch_size < 1 or self.pool_size < 1:
            raise SpecError("steps, batch size and pool size must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise SpecError(f"bad optimiser settings: lr={self.lr}, weight_decay={self.weight_decay}")
        if self.time_budget_min is not None and self.time_budget_min <= 0:
            raise SpecError(f"time budget must be > 0 minutes, got {self.time_budget_min}")
        if self.save_every < 1 or self.threads < 1 or self.eval_scenes < 0:
            raise SpecError("save_every and threads must be >= 1, eval_scenes >= 0")


def lr_factor(progress: float, step: int, warmup_steps: int, min_ratio: float) -> float:
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    cos = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * cos


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim > 1 else no_decay).append(p)  # no decay on BN weights and biases
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _to_torch(batch: Batch) -> dict:
    return {
        "images": torch.from_numpy(batch.images),
        "seg": torch.from_numpy(batch.seg),
        "depth": torch.from_numpy(batch.depth),
        "lidar": torch.from_numpy(batch.lidar) if batch.lidar is not None else None,
        "boxes": [torch.from_numpy(b) for b in batch.boxes],
        "classes": [torch.from_numpy(c) for c in batch.classes],
    }


def compute_loss(model, batch: dict, weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    spec = model.spec
    out = model(batch["images"], batch["lidar"]) if spec.fusion else model(batch["images"])
    total = torch.zeros(())
    parts: dict[str, float] = {}
    if "det" in out:
        points, strides = model.anchor_points()
        boxes, _ = model.decode_detections(out["det"])
        det, det_parts = detection_loss(
            out["det"], boxes, points, strides, batch["boxes"], batch["classes"], weights
        )
        total = total + weights.detection * det
        parts.update(det_parts)
        parts["det"] = float(det.detach())
    if "seg" in out:
        seg = segmentation_loss(out["seg"], batch["seg"], weights)
        total = total + weights.segmentation * seg
        parts["seg"] = float(seg.detach())
    if "depth" in out:
        dep = depth_loss(out["depth"], batch["depth"], spec.max_depth_m, weights)
        total = total + weights.depth * dep
        parts["depth"] = float(dep.detach())
    parts["loss"] = float(total.detach())
    return total, parts


def _load_matching(model: torch.nn.Module, path: Path) -> int:
    """Copy the tensors of a checkpoint whose names and shapes match; returns how many."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    src = state.get("state_dict", state.get("model", state))
    own = model.state_dict()
    matched = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    own.update({k: v.to(own[k].dtype) for k, v in matched.items()})
    model.load_state_dict(own)
    log.info("initialised %d/%d tensors from %s", len(matched), len(own), path)
    return len(matched)


def _freeze_all_but(model: torch.nn.Module, prefixes: tuple[str, ...]) -> None:
    """requires_grad only under the named submodules; SpecError naming an unknown one."""
    names = dict(model.named_modules())
    unknown = [p for p in prefixes if p not in names]
    if unknown:
        top = sorted(n for n in names if n and "." not in n)
        raise SpecError(f"--train-only: no module {unknown} in {type(model).__name__} (top level: {top})")
    for name, p in model.named_parameters():
        p.requires_grad = any(name.startswith(prefix + ".") for prefix in prefixes)


def _train_mode(model: torch.nn.Module, prefixes: tuple[str, ...]) -> None:
    """Training mode for the trained modules only: frozen BN layers keep their running statistics."""
    if not prefixes:
        model.train()
        return
    model.eval()
    for prefix in prefixes:
        model.get_submodule(prefix).train()


def _save_state(path: Path, model, optimizer, step: int, elapsed: float, rng: np.random.Generator) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    os.replace(tmp, path)


@dataclass
class TrainResult:
    steps: int
    wall_minutes: float
    final_loss: dict[str, float]
    history: list[dict[str, float]]


def train(options: TrainOptions, pool: ScenePool | None = None) -> TrainResult:
    """Train ``options.network`` and write the checkpoint (no evaluation; see :func:`train_and_ship`)."""
    from exporters.networks import build_network

    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    model = build_network(options.network, input_hw=tuple(options.input_hw))
    spec = model.spec
    state_path = options.workdir / "last.pt"
    if options.resume and not state_path.exists():
        raise SpecError(f"nothing to resume: {state_path} does not exist")
    if pool is None:
        pool = build_pool(
            options.pool_size,
            spec.input_hw,
            lidar=spec.fusion or options.pool_lidar,
            seed_base=options.seed * 100_003,
            cache_dir=options.cache_dir,
            progress=options.progress,
        )
    if spec.fusion and pool.lidar is None:
        raise SpecError(f"{options.network} is a fusion network: the scene pool needs LiDAR")
    if options.init_from is not None:
        _load_matching(model, Path(options.init_from))
    if options.train_only:
        _freeze_all_but(model, options.train_only)
    optimizer = torch.optim.AdamW(
        _param_groups(model, options.weight_decay), lr=options.lr, betas=(0.9, 0.99)
    )
    options.workdir.mkdir(parents=True, exist_ok=True)
    step, elapsed = 0, 0.0
    if options.resume:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed %s at step %d (%.1f min spent)", options.network, step, elapsed / 60)
    _train_mode(model, options.train_only)
    budget_s = options.time_budget_min * 60 if options.time_budget_min else None
    history: list[dict[str, float]] = []
    ema: dict[str, float] = {}
    bar = tqdm(
        total=options.steps, initial=step, desc=f"train {options.network}", disable=not options.progress
    )
    t0 = time.perf_counter() - elapsed
    progress = _progress(step, options.steps, elapsed, budget_s)
    while progress < 1.0:
        for g in optimizer.param_groups:
            g["lr"] = options.lr * lr_factor(progress, step, options.warmup_steps, options.min_lr_ratio)
        batch = _to_torch(sample_batch(pool, options.batch_size, rng, augment=options.augment))
        loss, parts = compute_loss(model, batch, options.weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - t0
        progress = _progress(step, options.steps, elapsed, budget_s)
        ema = {k: v if k not in ema else 0.9 * ema[k] + 0.1 * v for k, v in parts.items()}
        history.append({"step": step, **parts})
        bar.update(1)
        bar.set_postfix({k: f"{ema[k]:.3f}" for k in ("loss", "det", "seg", "depth") if k in ema})
        stop = options.stop_at is not None and step >= options.stop_at
        if step % options.save_every == 0 or progress >= 1.0 or stop:
            _save_state(state_path, model, optimizer, step, elapsed, rng)
            log.info(
                "step %d (%.1f min): %s", step, elapsed / 60, " ".join(f"{k}={v:.3f}" for k, v in ema.items())
            )
        if stop:
            break
    bar.close()
    return TrainResult(step, elapsed / 60, ema, history)


def _progress(step: int, steps: int, elapsed: float, budget_s: float | None) -> float:
    p = step / steps
    if budget_s is not None:
        p = max(p, elapsed / budget_s)
    return p


def train_and_ship(options: TrainOptions) -> dict:
    """Train, evaluate on the validation split, write ``out`` (.pt) and its metadata (.json)."""
    from exporters.evaluation.backends import torch_predictor
    from exporters.evaluation.run import evaluate_predictor
    from exporters.networks import build_network, save_checkpoint

    result = train(options)
    model = build_network(options.network, input_hw=tuple(options.input_hw))
    state = torch.load(options.workdir / "last.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    # shipped as FP16 (half the file size); round first so the metrics are those of what ships
    model.half().float()
    model.eval()
    meta = {
        "network": options.network,
        "input_hw": list(options.input_hw),
        "det_classes": list(model.spec.det_classes),
        "seg_classes": list(model.spec.seg_classes),
        "seed": options.seed,
        "steps": result.steps,
        "batch_size": options.batch_size,
        "pool_size": options.pool_size,
        "wall_minutes": round(result.wall_minutes, 2),
        "threads": options.threads,
        "weights_dtype": "float16",
        "init_from": _source_summary(options.init_from) if options.init_from else None,
        "silog_lambda": options.weights.silog_lambda,
        "train_only": list(options.train_only) or None,
        "options": {
            k: v
            for k, v in asdict(options).items()
            if k in ("lr", "weight_decay", "steps", "time_budget_min")
        },
        "final_loss": {k: round(v, 4) for k, v in result.final_loss.items()},
    }
    if options.eval_scenes:
        torch.set_num_threads(options.threads)
        metrics = evaluate_predictor(
            torch_predictor(model), model.spec, num_scenes=options.eval_scenes, progress=options.progress
        )
        meta["validation"] = {"scenes": options.eval_scenes, **{k: round(v, 4) for k, v in metrics.items()}}
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model.half(), out, meta)
    model.float()
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return meta


def _source_summary(path: Path) -> dict:
    """What a run started from: the checkpoint's network, steps and wall time (for the metadata)."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    meta = data.get("meta", {}) if isinstance(data, dict) else {}
    return {
        "file": Path(path).name,
        **{k: meta.get(k) for k in ("network", "steps", "wall_minutes", "silog_lambda")},
    }
