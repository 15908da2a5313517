"""The trainer: ``train(cfg, report=None)`` runs one whole training job; ``python -m splicemix.train``.

One function, no Ray: a study calls :func:`train` once per worker. The parts live in
:mod:`splicemix.engine` (``dist``, ``data``, ``optim``, ``loop``, ``state``, ``rundir``, ``train``, ``cli``);
this module is the public face and the ``python -m splicemix.train`` entry point. It is DDP-aware: when
``torch.distributed`` is initialised, the model is wrapped in DistributedDataParallel, each
rank reads its share of every epoch (DistributedSampler), mixes its own local batch, and
evaluation is sharded over the ranks and gathered, so every rank computes the same metrics.
Only rank 0 prints and writes files.

Per epoch the trainer

* trains on SpliceMixed batches (B regular + B' mixed images) with the multi-label
  soft-margin loss (BCE with logits, mean over classes) and, for SpliceMix-CL, one backbone
  pass plus the consistency loss;
* evaluates mAP, CP/CR/CF1/OP/OR/OF1 (threshold 0.5, and top-3), in percent, plus mAP at every
  ``data.eval_sizes`` resolution (key ``"mAP@S"``);
* prints one line, appends the metrics to ``out_dir/metrics.jsonl``, saves
  ``out_dir/checkpoint.pt`` atomically and calls ``report(metrics)``.

A loss that stops being finite raises :class:`TrainingDiverged` (a ``FloatingPointError``).

Every epoch re-seeds the data order, augmentation and mixing from ``(seed, epoch, rank)``, so
a run resumed from a checkpoint continues exactly as the uninterrupted run would (on CPU,
with deterministic algorithms).
"""

from __future__ import annotations

import sys

from .engine.cli import main
from .engine.data import hide_labels
from .engine.loop import TrainingDiverged
from .engine.rundir import RunDir
from .engine.train import train

__all__ = ["train", "hide_labels", "main", "METRICS_FILE", "CHECKPOINT_FILE", "TrainingDiverged"]

METRICS_FILE = RunDir.METRICS  #: ``metrics.jsonl``: one JSON object per epoch
CHECKPOINT_FILE = RunDir.CHECKPOINT  #: ``checkpoint.pt``: everything a run needs to continue


if __name__ == "__main__":
    sys.exit(main())
