"""Fixtures shared by the test modules: a local Ray for the modules that run real studies, a data cache,
and the tiny synthetic data set of the one-epoch training tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (8 logical CPUs, loopback only) per test module, started on first use."""
    from study.cluster import init_ray

    started = init_ray(None, 8, False, False)  # sets Ray's environment variables before importing it
    yield
    if started:
        import ray

        ray.shutdown()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A synthetic-data cache folder shared by the studies of one module."""
    return str(tmp_path_factory.mktemp("data"))


#: the tiny synthetic data set of the one-epoch training tests
TINY = {"n_train": 64, "n_val": 32, "image_size": 32, "seed": 0}


@dataclass(frozen=True)
class TinyRun:
    """The tiny synthetic data set (:data:`TINY`, made once per session) and the overrides of a short
    one-thread run on it: smallcnn at 32 px, batch 16, one epoch, no progress bar, no loader workers."""

    root: Path

    def overrides(self, out: Path, *extra: str) -> list[str]:
        """The run's overrides, its results in ``out``; ``extra`` come last and win."""
        return [
            f"data.root={self.root}",
            *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
            "data.image_size=32",
            "data.workers=0",
            "model.name=smallcnn",
            "train.batch_size=16",
            "train.epochs=1",
            "train.progress=false",
            "train.cpu_threads=1",
            f"train.out_dir={out}",
            *extra,
        ]

    @staticmethod
    def metrics(out: Path) -> list[dict]:
        """The per-epoch rows a run wrote to ``out``."""
        from splicemix.train import METRICS_FILE

        return [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyRun:
    """:class:`TinyRun` over a data set made once per test session."""
    from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic

    return TinyRun(ensure_synthetic(tmp_path_factory.mktemp("synthetic_tiny"), SyntheticConfig(**TINY)))
