"""Fixtures shared by the modules that run real Ray studies."""

from __future__ import annotations

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
