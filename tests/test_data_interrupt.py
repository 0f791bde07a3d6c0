"""Ctrl-C (SIGINT to the whole process group) while data is decoded or loader workers start:
the script must stop within seconds, leave no process behind and not report a worker failure."""
import numpy as np
import pytest

from datagen import image_tree
from proc_helpers import interrupt_group, start_group, wait_for_line

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "killpg"), reason="POSIX only")

# Decodes the tree over and over (so that SIGINT always lands in some phase of a decode:
# workers starting, decoding, or being torn down). CPython drops a KeyboardInterrupt raised
# while a finalizer or weakref callback runs ("Exception ignored in ..."); the flag makes such
# a lost Ctrl-C end the loop too, so only a real hang (the pool's teardown) fails the test.
# The warm-up decode does the lazy imports before SIGINT can come.
DECODE = """
import signal, sys
from alexnet_ext.data import open_dataset
hit = []
def on_sigint(signum, frame):
    hit.append(signum)
    raise KeyboardInterrupt
if __name__ == "__main__":
    signal.signal(signal.SIGINT, on_sigint)
    open_dataset(sys.argv[1], image_size=24, workers=1)
    print("ready", flush=True)
    while not hit:
        open_dataset(sys.argv[1], image_size=24, workers=2)
    sys.exit("KeyboardInterrupt (lost in a finalizer, seen by the flag)")
"""


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    rng = np.random.default_rng(7)
    return image_tree(tmp_path_factory.mktemp("tree"), rng, classes=("a", "b", "c", "d"),
                      train=150, val=0, layout="classes")


@pytest.mark.parametrize("delay", [0.2, 1.5])
def test_sigint_during_folder_decode_exits(small_tree, delay):
    import time

    proc = start_group(DECODE, small_tree)
    assert wait_for_line(proc, "ready", 60), proc.stderr.read()
    time.sleep(delay)
    ok, err = interrupt_group(proc, timeout=20)
    assert ok, f"the process group did not exit within 20 s of SIGINT:\n{err[-3000:]}"
    assert "KeyboardInterrupt" in err and "Error" not in err.replace("KeyboardInterrupt", ""), err[-3000:]


LOADER = """
import signal, sys
import numpy as np
from alexnet_ext.data import BatchLoader
from alexnet_ext.data.dataset import Split
from alexnet_ext.data.stores import ArrayStore

if __name__ == "__main__":
    mode = sys.argv[1]
    interrupted = []
    if mode == "handler":  # what train does: a handler that asks the loop to stop
        signal.signal(signal.SIGINT, lambda *a: interrupted.append(1))
    else:  # the default, plus a flag for a KeyboardInterrupt CPython drops (see DECODE)
        def on_sigint(signum, frame):
            interrupted.append(signum)
            raise KeyboardInterrupt
        signal.signal(signal.SIGINT, on_sigint)
    imgs = np.arange(64 * 3 * 16 * 16, dtype=np.int64).reshape(64, 3, 16, 16).astype(np.uint8)
    split = Split("train", np.arange(64) % 4, ArrayStore(imgs))
    loader = BatchLoader(split, batch_size=8, crop=12, mean=np.zeros((3, 16, 16), np.float32),
                         workers=2, seed=1)
    print("ready", flush=True)
    e = 0
    while True:
        for x, y in loader.epoch(e):
            if interrupted:
                loader.close()
                if mode == "handler":
                    sys.exit(0)
                sys.exit("KeyboardInterrupt (lost in a finalizer, seen by the flag)")
        e += 1
"""


@pytest.mark.parametrize("mode,delay", [("default", 0.2), ("handler", 0.0), ("handler", 0.5)])
def test_sigint_while_loader_workers_start(mode, delay):
    """Default SIGINT handling: KeyboardInterrupt, not a WorkerError, and no process left.
    A handler (as train installs): the workers survive the Ctrl-C and batches keep coming."""
    import time

    proc = start_group(LOADER, mode)
    assert wait_for_line(proc, "ready", 60), proc.stderr.read()
    time.sleep(delay)
    ok, err = interrupt_group(proc, timeout=20)
    assert ok, f"the process group did not exit within 20 s of SIGINT:\n{err[-3000:]}"
    assert "WorkerError" not in err and "alexnet_ext-loader" not in err, err[-3000:]
    if mode == "default":
        assert proc.returncode != 0 and err.rstrip().endswith(
            ("KeyboardInterrupt", "seen by the flag)")), err[-3000:]
    else:
        assert proc.returncode == 0, err[-3000:]


PREPARE = """
import sys, runpy
import alexnet_ext.data.prepare  # before "ready": on a loaded machine the interrupt must not land in imports
print("ready", flush=True)
sys.argv = ["prepare"] + sys.argv[1:]
runpy.run_module("alexnet_ext.prepare", run_name="__main__")
"""


def test_sigint_during_prepare_exits_and_says_how_to_resume(small_tree, tmp_path):
    """Interrupted: status 130, one line saying how to resume, and the same command then finishes.
    The SIGINT may also come after the work was done (a loaded machine decodes slowly, or not):
    then the index is written and the status is 0, or -SIGINT when the signal reached the
    interpreter's shutdown, after Python had restored the default handler (a shell shows 130
    for both interrupted forms; nothing is lost either way)."""
    import signal
    import time

    from alexnet_ext.data import open_dataset
    from alexnet_ext.data.prepare import main as prepare_main
    from alexnet_ext.data.shards import is_shard_dir

    out = tmp_path / "out"
    args = [small_tree, out, "--size", 48, "--workers", 2, "--shard-size", 8, "-q"]
    proc = start_group(PREPARE, *args)
    assert wait_for_line(proc, "ready", 60), proc.stderr.read()
    time.sleep(1.5)
    ok, err = interrupt_group(proc, timeout=20)
    assert ok, f"the process group did not exit within 20 s of SIGINT:\n{err[-3000:]}"
    if proc.returncode == 130:
        assert err.strip().splitlines() == [
            "prepare: interrupted; run the same command again to finish (finished shards are "
            "kept)"], err[-3000:]
    else:
        assert proc.returncode in (0, -signal.SIGINT) and err == "", (proc.returncode, err[-3000:])
        assert is_shard_dir(out), "the run ended without a status of 130 but did not finish"
    # What the message promises: the same command finishes (reusing the shards on disk).
    assert prepare_main([str(a) for a in args]) == 0
    ds = open_dataset(out)
    assert ds.format == "shards" and len(ds.split("train")) + len(ds.split("val")) == 600
