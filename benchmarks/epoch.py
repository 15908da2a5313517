"""Epoch suite: the trainer's epoch against a bare loop, and where the rest of the epoch goes.

The main job's setting (configs/default.yaml: the synthetic set of 2,000 train / 1,000 val
images at 64 px, smallcnn, SpliceMix default grids, batch 64, ``data.eval_sizes: [32]``),
generated in a temporary folder and run through the trainer's own parts, one thread, no
loader workers. Times are CPU seconds of this process (``time.process_time``), which the other
processes of a busy machine disturb far less than wall seconds (the compile time is wall).

"before" is the file path with the training model evaluated (``data.in_memory: false``,
``train.eval_fused: false``: what the trainer did before these options), "now" the defaults
(in memory, fused evaluation). Then:

* training: :func:`~splicemix.engine.loop.train_one_epoch` over the real loader, before (JPEG
  decode and transforms per sample) and now, against a bare loop over the same model and
  batches already mixed in memory (forward, loss, backward, AdamW); rounds interleaved, each
  round's ratio taken against its own bare loop, the median kept. Target: at least 0.95 of the bare loop;
* evaluation (:func:`~splicemix.engine.loop.evaluate`, at 64 and 32 px, one pass) as a share of the
  epoch (training + evaluation + checkpoint). Target: at most 15 %;
* where the file path's time goes, per epoch: JPEG decode, the per-sample transforms,
  SpliceCollate, the mixing; the in-memory loader; the checkpoint; the one-time decode;
* ``torch.compile`` of the model in the training step: its compile time and the step against eager.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from splicemix import SpliceCollate, SpliceMix
from splicemix.config import TrainConfig, load_config
from splicemix.data.base import load_rgb
from splicemix.data.memory import clear_decoded
from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic
from splicemix.engine.data import build_data, train_loader
from splicemix.engine.dist import DistContext, torch_settings
from splicemix.engine.loop import StepModule, evaluate, seed_epoch, train_one_epoch
from splicemix.engine.optim import Optimization
from splicemix.engine.rundir import RunDir
from splicemix.engine.state import TrainState
from splicemix.models import build_model

from .table import Row
from .timing import interleaved

SUITE = "epoch"
TRAIN_TARGET = 0.95
EVAL_TARGET = 0.15
_WHAT = {"file": "before (files, model as trained)", "memory": "now (in memory, fused eval)"}
_clock = time.process_time  # CPU seconds of this process: one thread, no workers, and far less
# sensitive than wall seconds to the other processes of a busy machine
_CPU = DistContext(distributed=False, rank=0, world=1, device=torch.device("cpu"))


def _config(root: Path, out: Path, in_memory: bool, quick: bool) -> TrainConfig:
    knobs = dict(n_train=160, n_val=64, image_size=32) if quick else {}
    size = 32 if quick else 64
    return load_config(
        None,
        [
            f"data.root={root}",
            *(f"data.synthetic.{k}={v}" for k, v in knobs.items()),
            f"data.image_size={size}",
            f"data.eval_sizes=[{size // 2}]",
            f"data.in_memory={str(in_memory).lower()}",
            f"train.eval_fused={str(in_memory).lower()}",  # "before" = the file path, the training model evaluated
            "train.batch_size=32" if quick else "train.batch_size=64",
            "train.cpu_threads=1",
            "train.device=cpu",
            "train.progress=false",
            f"train.out_dir={out}",
        ],
    )


class _Epochs:
    """The trainer's parts for one config (as engine/train.py wires them) and its bare loop."""

    def __init__(self, cfg: TrainConfig) -> None:
        t0 = _clock()
        self.data = build_data(cfg, _CPU)
        self.setup_s = _clock() - t0
        self.cfg, tc = cfg, cfg.train
        torch.manual_seed(tc.seed)
        self.net = build_model(cfg.model.name, self.data.num_classes, pretrained=None, image_size=cfg.data.image_size)
        self.step = StepModule(self.net, False, 1.0, True)
        self.load_gen, self.mix_gen = torch.Generator(), torch.Generator()
        self.mixer = SpliceMix(generator=self.mix_gen, **cfg.mix.mixer_kwargs())
        self.collate = SpliceCollate(self.mixer.max_mixed(tc.batch_size))
        self.loader, _ = train_loader(self.data.train, cfg, _CPU, self.load_gen, self.collate)
        self.opt = Optimization.build(cfg, self.net, len(self.loader), _CPU)
        self.state = TrainState(self.net, self.opt, self.mix_gen, _CPU.device)
        self.run = RunDir(tc.out_dir)
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.epoch = 0
        seed_epoch(tc.seed, 0, 0, self.load_gen, self.mix_gen)
        self.batches = [b.mix(self.mixer) for b in self.loader]  # the bare loop's batches, mixed, in memory
        self.images = sum(int(b[0].shape[0]) for b in self.batches)

    def train(self) -> float:
        """Images per second of one trainer epoch."""
        seed_epoch(self.cfg.train.seed, self.epoch, 0, self.load_gen, self.mix_gen)
        self.epoch += 1
        t0 = _clock()
        stats = train_one_epoch(self.step, self.net, self.loader, self.opt, self.mixer, _CPU)
        return stats.images / (_clock() - t0)

    def bare(self) -> float:
        """Images per second of a bare loop over the in-memory batches: forward, loss, backward, AdamW."""
        t0 = _clock()
        self.step.train()
        for images, targets, plan in self.batches:
            loss, _, _ = self.step(images, targets, plan)
            self.opt.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.optimizer.step()
        return self.images / (_clock() - t0)

    def evaluate(self) -> float:
        t0 = _clock()
        evaluate(self.net, self.data, self.cfg, _CPU)
        return _clock() - t0

    def checkpoint(self) -> float:
        t0 = _clock()
        self.state.save(self.run, self.cfg, 1)
        return _clock() - t0


def run(quick: bool, device: torch.device) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="splicemix_epoch_") as tmp:
        root = Path(tmp) / "synthetic"
        cfgs = {m: _config(root, Path(tmp) / f"run_{m}", m, quick) for m in (False, True)}
        knobs = SyntheticConfig(**cfgs[False].data.synthetic.model_dump())
        ensure_synthetic(root, knobs)
        clear_decoded()
        with torch_settings(cfgs[True].train, _CPU.device):  # one thread, as the main job's trials
            return _measure(cfgs, quick)


def _measure(cfgs: dict[bool, TrainConfig], quick: bool) -> list[Row]:
    rounds = 1 if quick else 3
    paths = {"file": _Epochs(cfgs[False]), "memory": _Epochs(cfgs[True])}
    got: dict[str, list[float]] = {}
    for _ in range(rounds + 1):  # interleaved: the load of a busy machine drifts; round 0 warms up
        bare = paths["file"].bare()
        for name, e in paths.items():
            rate, t_eval, t_ckpt = e.train(), e.evaluate(), e.checkpoint()
            got.setdefault(f"{name} ratio", []).append(rate / bare)
            got.setdefault(f"{name} rate", []).append(rate)
            t_train = e.images / rate
            got.setdefault(f"{name} eval", []).append(t_eval)
            got.setdefault(f"{name} share", []).append(t_eval / (t_train + t_eval + t_ckpt))
            got.setdefault(f"{name} ckpt", []).append(t_ckpt)
        got.setdefault("bare", []).append(bare)
    med = {k: statistics.median(v[1:]) for k, v in got.items()}
    rows = _headline(med, quick)
    rows += _breakdown(paths, med, quick)
    rows += _compile(paths["memory"], quick)
    return rows


def _headline(med: dict[str, float], quick: bool) -> list[Row]:
    rows = []
    for name in ("file", "memory"):
        what = _WHAT[name]
        r = med[f"{name} ratio"]
        rows.append(
            Row(
                SUITE,
                f"training, {what}",
                med[f"{name} rate"],
                med[f"{name} rate"] / r,
                unit="img/s",
                target=f">= {TRAIN_TARGET} x bare loop",
                met=None if quick else r >= TRAIN_TARGET,
                note=f"train_one_epoch vs the bare loop (same model, mixed batches in memory); "
                f"median of per-round ratios {r:.3f}",
            )
        )
    for name in ("file", "memory"):
        what = _WHAT[name]
        share = med[f"{name} share"]
        rows.append(
            Row(
                SUITE,
                f"evaluation share of the epoch, {what}",
                med[f"{name} eval"],
                med[f"{name} eval"] / share,
                unit="s",
                target=f"<= {EVAL_TARGET:.0%} of epoch",
                met=None if quick else share <= EVAL_TARGET,
                note="evaluate() at both resolutions; reference = training + evaluation + checkpoint; "
                + ("data.in_memory false, train.eval_fused false" if name == "file" else "the defaults"),
            )
        )
    return rows


def _loader_pass(e: _Epochs) -> None:
    seed_epoch(e.cfg.train.seed, 0, 0, e.load_gen, e.mix_gen)
    for _ in e.loader:
        pass


def _breakdown(paths: dict[str, _Epochs], med: dict[str, float], quick: bool) -> list[Row]:
    """Per epoch of the file path: decode, transforms, collate, mixing; the loaders; the checkpoint; set-up."""
    file, memory = paths["file"], paths["memory"]
    t_epoch = file.images / med["file rate"]
    base: Any = file.data.train.base  # type: ignore[attr-defined]
    images = [load_rgb(p) for p in base.image_paths[:8]]  # warm-up
    t0 = _clock()
    images = [load_rgb(p) for p in base.image_paths]
    t_decode = _clock() - t0
    t0 = _clock()
    samples = [(base.transform(im), base.targets[i]) for i, im in enumerate(images)]
    t_transform = _clock() - t0
    b = file.cfg.train.batch_size
    chunks = [samples[i : i + b] for i in range(0, len(samples) - b + 1, b)]
    t0 = _clock()
    collated = [file.collate(c) for c in chunks]
    t_collate = _clock() - t0
    t0 = _clock()
    for batch in collated:
        batch.mix(file.mixer)
    t_mix = _clock() - t0
    loaders = {"file": [], "memory": []}
    for _ in range(1 if quick else 3):
        for name, e in (("file", file), ("memory", memory)):
            t0 = _clock()
            _loader_pass(e)
            loaders[name].append(_clock() - t0)
    loader = {k: statistics.median(v) for k, v in loaders.items()}
    per_epoch = [
        ("JPEG decode (file path)", t_decode, "load_rgb of every training image"),
        ("per-sample transforms (file path)", t_transform, "PIL resize/flip, ToImage, ToDtype, Normalize"),
        ("SpliceCollate", t_collate, "stacking the batches into the reserved buffers"),
        ("mixing", t_mix, "SpliceMix in place"),
        ("loader pass, file path", loader["file"], "the trainer's DataLoader alone: decode + transforms + collate"),
        ("loader pass, in memory", loader["memory"], "rows, flips, batched normalise, collate"),
        ("checkpoint save", med["memory ckpt"], "state.save (torch.save to a temporary name, rename)"),
    ]
    rows = [
        Row(SUITE, f"{case}, per epoch", t, t_epoch, unit="s", note=f"{note}; reference = trainer epoch (file path)")
        for case, t, note in per_epoch
    ]
    rows.append(
        Row(
            SUITE,
            "set-up: build_data in memory (decode once)",
            memory.setup_s,
            file.setup_s,
            unit="s",
            note="train + val + the 32 px val decoded once per process; reference = build_data of the file path",
        )
    )
    return rows


def _compile(e: _Epochs, quick: bool) -> list[Row]:
    """torch.compile of the model in the training step against eager, on one mixed batch; its compile time.
    (Compiling the whole StepModule fails here: its loss comes back without a grad_fn.)"""
    if quick:
        return []
    images, targets, plan = e.batches[0]
    compiled = StepModule(torch.compile(e.net), False, 1.0, True)  # type: ignore[arg-type]

    def step(module: Any) -> None:
        loss, _, _ = module(images, targets, plan)
        e.opt.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        e.opt.optimizer.step()

    t0 = time.perf_counter()
    try:
        step(compiled)
    except Exception as exc:  # no compiler, an unsupported op: report, do not fail the suite
        return [Row(SUITE, "torch.compile training step", float("nan"), note=f"failed: {type(exc).__name__}")]
    t_compile = time.perf_counter() - t0
    t = interleaved({"eager": lambda: step(e.step), "compiled": lambda: step(compiled)}, rounds=5, number=5)
    saved = t["eager"] - t["compiled"]
    steps = e.cfg.train.epochs * len(e.loader)
    even = f"{t_compile / saved:.0f} steps to pay for it" if saved > 0 else "never pays"
    return [
        Row(
            SUITE,
            f"torch.compile training step, B={images.shape[0]}",
            t["compiled"] * 1e3,
            t["eager"] * 1e3,
            unit="ms",
            note=f"reference = eager; compile {t_compile:.1f} s: {even} (a trial: {steps} steps)",
        ),
    ]
