"""Fixtures shared by the modules that run real Ray studies."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (8 logical CPUs, loopback only) per test module, started on first use."""
    import ray

    from study.run import _init_ray

    started = _init_ray(None, 8, False, False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A synthetic-data cache folder shared by the studies of one module."""
    return str(tmp_path_factory.mktemp("data"))
