"""Op fuzzer driver (run by tests/test_fuzz_ops.py in child processes; also usable alone).

Call i of a run is a pure function of (seed, i): a valid call of a random public op of
alexnet_ext.ops on small random geometry with random options (tests/fuzz_cases.py: NCHW/NHWC
layouts, fused ReLU epilogues and backwards, result dtypes), then 0-3 random mutations (wrong
dtype, rank, shape, layout, read-only or aliased outputs, empty arrays, non-arrays, huge, negative
and non-integer geometry, NaN scalars, bad or swapped layout strings, bad activations, bools and
result dtypes, bfloat16 results on the host). Every array is carved out of a larger byte buffer
whose guard zones hold a sentinel; after the call the guards must be unchanged (no out-of-bounds
write) and the inputs too (unless the call may write them). The call must return or raise
TypeError/ValueError; anything else is reported. A crash kills the child: the test then names the
last call started.

    python tests/fuzz_driver.py --seed S --start I --count N     # prints FAIL lines, exit 0
    python tests/fuzz_driver.py --seed S --start I --count 1 -v  # one call, described
"""
import argparse
import inspect
import sys
import traceback

import numpy as np

from alexnet_ext import ops
from fuzz_cases import BF16, OPTION_KEYS, bad_option, make_call, pick

GUARD = 64  # bytes of sentinel on each side of every array
SENTINEL = 0xA5
HUGE = (-2**63 - 1, -2**63, -1, 0, 2**31, 2**62, 2**63 - 1, 2**63, 2**64, 10**30)
BIG_OK = 2**31 - 1  # accepted for strides and paddings (the bound), never for sizes


class Arrays:
    """Guarded arrays of one call, and the checks after it."""

    def __init__(self, rng):
        self.rng = rng
        self.bases = []    # (buffer, start, end): bytes outside [start, end) are guard
        self.inputs = []   # (array, bytes before the call)

    def new(self, shape, dtype=np.float32, strided=False, fill=None):
        dtype = np.dtype(dtype)
        full = tuple(shape[:-1]) + (shape[-1] * 2,) if strided and shape else tuple(shape)
        nbytes = int(np.prod(full, dtype=np.int64)) * dtype.itemsize
        buf = np.full(nbytes + 2 * GUARD, SENTINEL, np.uint8)
        a = buf[GUARD:GUARD + nbytes].view(dtype).reshape(full)
        if fill is not None:
            a[...] = fill
        elif dtype.kind == "f":
            a[...] = self.rng.standard_normal(full)
        elif dtype.kind in "iu":
            a[...] = self.rng.integers(0, 3, full)
        self.bases.append((buf, GUARD, GUARD + nbytes))
        if strided and shape:
            a = a[..., ::2]
        return a

    def watch(self, *arrays):
        for a in arrays:
            if isinstance(a, np.ndarray):
                self.inputs.append((a, a.tobytes()))

    def check(self):
        for buf, start, end in self.bases:
            if np.any(buf[:start] != SENTINEL) or np.any(buf[end:] != SENTINEL):
                return "guard zone overwritten (out-of-bounds write)"
        for a, before in self.inputs:
            if a.tobytes() != before:
                return f"input {a.dtype}{a.shape} changed"
        return None


GEOMETRY_KEYS = {"stride", "padding", "size", "image_size", "filter_size", "groups", "block", "ks",
                 "pool_size", "pool_stride", "pool_padding"}
ARRAY_KEYS = {"out", "bias", "mask_out", "grad_x_out", "grad_w_out", "grad_b_out", "offsets",
              "shift", "relu_mask", "relu_y"}
READ_KEYS = ("bias", "offsets", "shift", "relu_mask", "relu_y")  # array options only read


def _bad_array(rng, A, a):
    """A mutation of array `a`: other dtype, rank, shape, layout, or not an array at all."""
    shape = a.shape if isinstance(a, np.ndarray) else (3,)
    kind = int(rng.integers(9))
    if kind == 0:
        return A.new(shape, pick(rng, [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, ">f4", BF16]))
    if kind == 1:
        return A.new(shape + (int(rng.integers(1, 3)),) if rng.integers(2) or not shape else shape[1:] or (1,))
    if kind == 2 and shape:
        s = list(shape)
        i = int(rng.integers(len(s)))
        s[i] = max(0, s[i] + int(rng.choice([-1, 1, 2])))
        return A.new(tuple(s), a.dtype if isinstance(a, np.ndarray) else np.float32)
    if kind == 3 and shape:
        return A.new(shape, a.dtype if isinstance(a, np.ndarray) else np.float32, strided=True)
    if kind == 4 and isinstance(a, np.ndarray) and a.ndim >= 2:
        return A.new(shape[::-1]).T  # right shape, Fortran order
    if kind == 5 and isinstance(a, np.ndarray):
        r = A.new(shape, a.dtype)
        r.flags.writeable = False
        return r
    if kind == 6:
        return pick(rng, [None, 1.5, "x", [1.0, 2.0]])
    if kind == 7:
        return A.new((0,) + tuple(shape[1:]), a.dtype if isinstance(a, np.ndarray) else np.float32)
    return A.new(shape[:0] or (), np.float32) if rng.integers(2) else A.new((1,) * 5)


def _bad_scalar(rng, key, v):
    if key in GEOMETRY_KEYS:
        big = [BIG_OK] if key in ("stride", "padding", "pool_stride", "pool_padding") else []
        choice = pick(rng, list(HUGE) + big)
        if isinstance(v, tuple) and v and rng.integers(2):
            t = list(v)
            t[int(rng.integers(len(t)))] = choice
            return tuple(t)
        return pick(rng, [choice, choice, 1.5, None, "3", (1, 2, 3), True])
    return pick(rng, [float("nan"), float("inf"), -1.0, 1e300, -2**63, 2**64, None, "1", True])


def mutate(rng, A, name, args, kwargs, writes):
    """Applies one random mutation; returns True when it may make the call write an input."""
    slots = [("a", i) for i in range(len(args))] + [("k", k) for k in kwargs]
    accepted = inspect.signature(getattr(ops, name)).parameters
    # absent optional arrays and options too; sorted: a set's order changes with the process's
    # string hash seed, and call i must be the same call in every process
    slots += [("k", k) for k in sorted(ARRAY_KEYS | OPTION_KEYS)
              if k not in kwargs and k in accepted]
    where, key = slots[int(rng.integers(len(slots)))]
    cur = args[key] if where == "a" else kwargs.get(key)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    aliased = False
    if where == "k" and key in OPTION_KEYS:  # layout, activation, relu, out_dtype, grad_x_dtype
        new = bad_option(rng, key, cur)
    elif isinstance(cur, list) and cur and isinstance(cur[0], np.ndarray):  # sgd_update_many
        j = int(rng.integers(len(cur)))
        new = list(cur)
        new[j] = _bad_array(rng, A, cur[j]) if rng.integers(3) else cur[(j + 1) % len(cur)]
        aliased = True
    elif isinstance(cur, np.ndarray) or (key in ARRAY_KEYS and cur is None):
        if key in ARRAY_KEYS and arrays and rng.integers(2):  # out aliasing an input
            src = arrays[int(rng.integers(len(arrays)))]
            new = src if rng.integers(2) else src.reshape(-1)[::-1].reshape(src.shape)
            aliased = True
        else:
            new = _bad_array(rng, A, cur)
    elif isinstance(cur, (int, float, tuple, bool)) and not isinstance(cur, np.ndarray):
        if name in ("philox4x32_10",):
            t = list(cur)
            t[int(rng.integers(len(t)))] = pick(rng, HUGE)
            new = tuple(t)
        else:
            new = _bad_scalar(rng, key if where == "k" else ("size" if name.endswith("size") else "x"), cur)
    else:
        new = _bad_array(rng, A, cur)
    if where == "a":
        args[key] = new
    else:
        kwargs[key] = new
    return aliased or key in writes


class _Window:
    """A CUDA Array Interface producer: `shape` of `dtype` at byte `offset` of DeviceArray `base`."""

    def __init__(self, base, offset, shape, dtype, readonly):
        self.base = base
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": np.dtype(dtype).str, "strides": None, "version": 3,
            "data": (base.ptr + offset, readonly), "stream": None}


class DeviceArrays:
    """The device side of a call: each dense host array of the call copied into the middle of a
    guarded device buffer (GUARD sentinel bytes each side); non-dense ones stay on the host (a mix
    is a TypeError to check too)."""

    def __init__(self, watched=()):
        from alexnet_ext import cuda
        self.cuda = cuda
        self.watched = {id(a) for a in watched}  # host arrays the call must not change
        self.bufs = []  # (device buffer, host copy of it before the call, must stay unchanged)

    def move(self, a):
        if isinstance(a, list):
            return [self.move(x) for x in a]
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or a.dtype.str not in (
                "<f4", "<i4", "<i8", "|u1"):
            return a
        host = np.full(a.nbytes + 2 * GUARD, SENTINEL, np.uint8)
        host[GUARD:GUARD + a.nbytes] = np.frombuffer(a.tobytes(), np.uint8)
        buf = self.cuda.to_device(host)
        self.bufs.append((buf, host, not a.flags.writeable or id(a) in self.watched))
        return self.cuda.asarray(_Window(buf, GUARD, a.shape, a.dtype, not a.flags.writeable))

    def check(self):
        try:
            self.cuda.synchronize()
        except ValueError:
            pass  # a deferred range check's verdict (bad switches/labels): the op's error, late
        for buf, before, fixed in self.bufs:
            after = buf.get()
            if np.any(after[:GUARD] != SENTINEL) or np.any(after[-GUARD:] != SENTINEL):
                return "device guard zone overwritten (out-of-bounds write)"
            if fixed and not np.array_equal(after, before):
                return "a device input (or read-only array) changed"
        return None


def describe(v):
    if isinstance(v, np.ndarray):
        flags = "" if v.flags.c_contiguous else " noncontig"
        flags += "" if v.flags.writeable else " readonly"
        return f"ndarray({v.dtype}, {v.shape}{flags})"
    if isinstance(v, list):
        return "[" + ", ".join(describe(x) for x in v) + "]"
    return repr(v)


def build(seed, i):
    """Call i of run `seed`: (name, args, kwargs, guarded arrays, description)."""
    rng = np.random.default_rng([seed, i])
    A = Arrays(rng)
    name, args, kwargs, writes = make_call(rng, A)
    may_write = False
    for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):
        may_write |= mutate(rng, A, name, args, kwargs, writes)
    if name.startswith("sgd_update"):
        may_write = True  # in place by design
    if not may_write:
        A.watch(*(a for a in args if isinstance(a, np.ndarray)))
        A.watch(*(kwargs[k] for k in READ_KEYS if k in kwargs))
    desc = f"ops.{name}(" + ", ".join([describe(a) for a in args] +
                                      [f"{k}={describe(v)}" for k, v in kwargs.items()]) + ")"
    return name, args, kwargs, A, desc


def one_call(seed, i, device=False):
    """Runs call i (on DeviceArrays with `device`); returns (description, failure or None)."""
    name, args, kwargs, A, desc = build(seed, i)
    if device:
        D = DeviceArrays([a for a, _ in A.inputs])
        args = [D.move(a) for a in args]
        kwargs = {k: D.move(v) for k, v in kwargs.items()}
    try:
        getattr(ops, name)(*args, **kwargs)
    except (TypeError, ValueError, NotImplementedError):
        pass
    except Exception:  # noqa: BLE001 - anything else breaks the contract
        return desc, "raised " + traceback.format_exc().strip().splitlines()[-1]
    if device:
        return desc, D.check()
    return desc, A.check()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--describe", action="store_true", help="print the calls, run none")
    ap.add_argument("--device", action="store_true", help="the same calls on DeviceArrays")
    a = ap.parse_args(argv)
    if a.describe:
        for i in range(a.start, a.start + a.count):
            print(f"call {i}: {build(a.seed, i)[4]}")
        return
    with np.errstate(all="ignore"):
        for i in range(a.start, a.start + a.count):
            # the call about to run, so that a crash can be pinned on it
            sys.stderr.write(f"CALL {i}\n")
            sys.stderr.flush()
            desc, failure = one_call(a.seed, i, a.device)
            if failure:
                print(f"FAIL seed={a.seed} call={i}: {desc}: {failure}", flush=True)
            elif a.verbose:
                print(f"ok   seed={a.seed} call={i}: {desc}", flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
