"""Op fuzzer (issue 10): thousands of random mutated calls of every public op, in child processes.

tests/fuzz_driver.py builds call i of a run from (seed, i) alone: a valid call on small random
geometry with random options (tests/fuzz_cases.py: layout NCHW/NHWC, activation, relu masks and
flags, result dtypes), then random mutations (wrong dtypes, ranks, shapes, layouts, read-only or
aliased outputs, empty arrays, non-arrays, huge / negative / non-integer geometry, NaN scalars, bad
or swapped layout strings, bad activations and result dtypes, bfloat16 results on the host). Each
call must return or raise TypeError/ValueError, leave the sentinel guard zones around every array
untouched (no out-of-bounds write) and its inputs unchanged. A crash of a child fails the test with
the call that was running. The seed is fixed (ALEXNET_FUZZ_SEED overrides it, ALEXNET_FUZZ_CALLS the count);
`python tests/fuzz_driver.py --seed S --start I --count 1 --describe` prints a failing call.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("fuzz_driver.py")
SEED = int(os.environ.get("ALEXNET_FUZZ_SEED", "20261202"))
CALLS = int(os.environ.get("ALEXNET_FUZZ_CALLS", "4000"))
BATCHES = 4  # children; two run at a time


def _start(start, count):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, str(DRIVER), "--seed", str(SEED), "--start",
                             str(start), "--count", str(count)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc, start, count):
    out, err = proc.communicate(timeout=600)
    problems = [line for line in out.splitlines() if line.startswith("FAIL")]
    if proc.returncode != 0 or "DONE" not in out:
        calls = [line for line in err.splitlines() if line.startswith("CALL ")]
        last = int(calls[-1].split()[1]) if calls else start
        desc = subprocess.run([sys.executable, str(DRIVER), "--seed", str(SEED), "--start",
                               str(last), "--count", "1", "--describe"], capture_output=True,
                              text=True, env=dict(os.environ,
                                                  PYTHONPATH=os.pathsep.join(sys.path))).stdout
        tail = "\n".join(line for line in err.splitlines() if not line.startswith("CALL "))[-1500:]
        problems.append(f"child died (exit {proc.returncode}) in {desc.strip() or f'call {last}'}"
                        f"\n{tail}")
    return problems


def test_random_mutated_calls_of_every_op():
    per = -(-CALLS // BATCHES)
    ranges = [(b * per, min(per, CALLS - b * per)) for b in range(BATCHES)]
    problems = []
    for pair in (ranges[0:2], ranges[2:4]):  # two children at a time (CI has two cores)
        procs = [(_start(s, n), s, n) for s, n in pair if n > 0]
        for proc, s, n in procs:
            problems += _finish(proc, s, n)
    assert not problems, f"{len(problems)} bad call(s) (seed {SEED}):\n" + "\n".join(problems[:20])


def test_the_guard_zones_catch_an_out_of_bounds_write():
    """The fuzzer's own check can fail: a write one element past an array is reported."""
    sys.path.insert(0, str(DRIVER.parent))
    import numpy as np

    import fuzz_driver as F
    A = F.Arrays(np.random.default_rng(0))
    a = A.new((3, 4))
    assert A.check() is None
    buf, start, end = A.bases[-1]  # the guarded byte buffer around a
    assert end - start == a.nbytes
    buf[end] = 0  # the first guard byte after the array

    assert "guard zone" in A.check()
    b = F.Arrays(np.random.default_rng(0))
    x = b.new((5,))
    b.watch(x)
    x[2] += 1.0
    assert "changed" in b.check()


@pytest.mark.cuda
def test_random_mutated_calls_on_device_arrays():
    """The same calls with every dense array moved into a guarded DeviceArray buffer."""
    calls = int(os.environ.get("ALEXNET_FUZZ_DEVICE_CALLS", "1500"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, str(DRIVER), "--seed", str(SEED), "--count",
                             str(calls), "--device"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    problems = _finish(proc, 0, calls)
    assert not problems, f"{len(problems)} bad call(s) (seed {SEED}):\n" + "\n".join(problems[:20])
