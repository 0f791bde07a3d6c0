"""Shared test setup: fresh random data every run, reproducible from the printed seed."""
import os
import zlib

import numpy as np
import pytest

import alexnet_ext

BASE_SEED = int(os.environ.get("ALEXNET_TEST_SEED", np.random.SeedSequence().entropy % 2**32))


def pytest_report_header(config):
    s = alexnet_ext.cuda_status()
    cuda = "available" if s["available"] else f"not available ({s['reason']})"
    if s.get("emulated"):
        cuda += " (EMULATED on the CPU by tools/cuda_emu: correctness only)"
    return [f"alexnet_ext {alexnet_ext.__version__}, {alexnet_ext.get_num_threads()} CPU threads, CUDA {cuda}",
            f"random seed {BASE_SEED} (ALEXNET_TEST_SEED={BASE_SEED} repeats this run)"]


@pytest.fixture
def rng(request):
    """A generator seeded from the run's seed and the test's id: fresh data each run."""
    return np.random.default_rng([BASE_SEED, zlib.crc32(request.node.nodeid.encode())])


def pytest_collection_modifyitems(config, items):
    if alexnet_ext.cuda_available():
        if alexnet_ext.cuda_status().get("emulated"):
            skip = pytest.mark.skip(reason="gpu_scale: too big for the CPU emulator (tools/cuda_emu)")
            for item in items:
                if item.get_closest_marker("gpu_scale"):
                    item.add_marker(skip)
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: " + alexnet_ext.cuda_status()["reason"])
    for item in items:
        # The marker itself, not item.keywords: keywords also hold the names of the parent
        # folders, so a checkout in a folder named "cuda" would skip every test.
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)
