"""Op fuzzer driver (run by tests/test_fuzz_ops.py in child processes; also usable alone).

Call i of a run is a pure function of (seed, i): a valid call of a random public op of
alexnet_ext.ops on small random geometry, then 0-3 random mutations (wrong dtype, rank, shape,
layout, read-only or aliased outputs, empty arrays, non-arrays, huge, negative and non-integer
geometry, NaN scalars). Every array is carved out of a larger byte buffer whose guard zones hold a
sentinel; after the call the guards must be unchanged (no out-of-bounds write) and the inputs too
(unless the call may write them). The call must return or raise TypeError/ValueError; anything
else is reported. A crash kills the child: the test then names the last call started.

    python tests/fuzz_driver.py --seed S --start I --count N     # prints FAIL lines, exit 0
    python tests/fuzz_driver.py --seed S --start I --count 1 -v  # one call, described
"""
import argparse
import inspect
import sys
import traceback

import numpy as np

from alexnet_ext import ops

GUARD = 64  # bytes of sentinel on each side of every array
SENTINEL = 0xA5
HUGE = (-2**63 - 1, -2**63, -1, 0, 2**31, 2**62, 2**63 - 1, 2**63, 2**64, 10**30)
BIG_OK = 2**31 - 1  # accepted for strides and paddings (the bound), never for sizes


def pick(rng, seq):
    """A random element of a sequence of mixed types (rng.choice wants one dtype)."""
    return seq[int(rng.integers(len(seq)))]


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


def _conv_geo(rng):
    n, g = int(rng.integers(1, 3)), int(rng.choice([1, 1, 2]))
    cg, fg = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    h, w = (int(v) for v in rng.integers(1, 8, 2))
    ph, pw = (int(v) for v in rng.integers(0, 3, 2))
    kh, kw = int(rng.integers(1, h + 2 * ph + 1)), int(rng.integers(1, w + 2 * pw + 1))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    ceil = bool(rng.integers(2))
    ho = ops.conv_output_size(h, kh, sh, ph, ceil)
    wo = ops.conv_output_size(w, kw, sw, pw, ceil)
    return n, g * cg, h, w, g * fg, kh, kw, (sh, sw), (ph, pw), g, ceil, ho, wo


def _pool_geo(rng):
    n, c = (int(v) for v in rng.integers(1, 3, 2))
    h, w = (int(v) for v in rng.integers(1, 8, 2))
    kh, kw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    ceil = bool(rng.integers(2))
    ho = ops.pool_output_size(h, kh, sh, ph, ceil)
    wo = ops.pool_output_size(w, kw, sw, pw, ceil)
    return n, c, h, w, (kh, kw), (sh, sw), (ph, pw), ceil, ho, wo


def make_call(rng, A):
    """(op name, args, kwargs, writes): a valid call; `writes` names the arguments it may write."""
    f32 = A.new
    name = pick(rng, OPS)
    if name in ("filter_acts", "img_acts", "weight_acts"):
        n, c, h, w, f, kh, kw, s, p, g, ceil, ho, wo = _conv_geo(rng)
        kw_ = dict(stride=s, padding=p, groups=g, ceil_mode=ceil)
        out_shape = {"filter_acts": (n, f, ho, wo), "img_acts": (n, c, h, w),
                     "weight_acts": (f, c // g, kh, kw)}[name]
        if rng.integers(2):
            kw_.update(out=f32(out_shape), scale_targets=float(rng.choice([0.0, 0.5])))
        if name == "filter_acts":
            if rng.integers(2):
                kw_["bias"] = f32((f,))
            return name, [f32((n, c, h, w)), f32((f, c // g, kh, kw))], kw_, ("out",)
        if name == "img_acts":
            kw_["image_size"] = (h, w)
            return name, [f32((n, f, ho, wo)), f32((f, c // g, kh, kw))], kw_, ("out",)
        kw_["filter_size"] = (kh, kw)
        return name, [f32((n, c, h, w)), f32((n, f, ho, wo))], kw_, ("out",)
    if name == "conv_bias_grad":
        return name, [f32(tuple(int(v) for v in rng.integers(1, 4, 4)))], {}, ()
    if name in ("max_pool", "avg_pool", "max_pool_undo", "avg_pool_undo"):
        n, c, h, w, k, s, p, ceil, ho, wo = _pool_geo(rng)
        kw_ = dict(size=k, stride=s, padding=p)
        if name == "max_pool_undo":
            sw = A.new((n, c, ho, wo), pick(rng, [np.int32, np.int64]), fill=rng.integers(0, h * w, (n, c, ho, wo)))
            return name, [f32((n, c, ho, wo)), sw], dict(image_size=(h, w)), ()
        kw_["ceil_mode"] = ceil
        if name == "avg_pool_undo":
            return name, [f32((n, c, ho, wo))], dict(kw_, image_size=(h, w)), ()
        return name, [f32((n, c, h, w))], kw_, ()
    if name in ("response_norm", "response_norm_undo"):
        shape = tuple(int(v) for v in rng.integers(1, 5, 4))
        kw_ = dict(size=int(rng.integers(1, 7)), k=2.0, alpha=1e-3, beta=0.75)
        if name == "response_norm":
            return name, [f32(shape)], kw_, ()
        x = f32(shape)
        y, d = ops.response_norm(x, **kw_)
        yy, dd = f32(shape, fill=y), f32(shape, fill=d)
        return name, [f32(shape), x, yy, dd], kw_, ()
    if name in ("response_norm_max_pool", "response_norm_max_pool_undo"):
        n, c, h, w, k, s, p, ceil, ho, wo = _pool_geo(rng)
        kw_ = dict(size=int(rng.integers(1, 7)), k=2.0, alpha=1e-3, beta=0.75)
        if name == "response_norm_max_pool":
            return name, [f32((n, c, h, w))], dict(kw_, pool_size=k, pool_stride=s,
                                                   pool_padding=p, ceil_mode=ceil), ()
        sw = A.new((n, c, ho, wo), pick(rng, [np.int32, np.int64]),
                   fill=rng.integers(0, h * w, (n, c, ho, wo)))
        d = f32((n, c, h, w), fill=2.0 + rng.random((n, c, h, w)))
        return name, [f32((n, c, ho, wo)), sw, f32((n, c, h, w)), d], kw_, ()
    shape = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(1, 4))))
    if name in ("relu", "add"):
        args = [f32(shape)] if name == "relu" else [f32(shape), f32(shape)]
        return name, args, dict(out=f32(shape)) if rng.integers(2) else {}, ("out",)
    if name == "relu_undo":
        return name, [f32(shape), f32(shape)], {}, ()
    if name == "dropout":
        kw_ = dict(p=float(rng.choice([0.0, 0.5, 0.9])), seed=int(rng.integers(0, 2**63)),
                   offset=int(rng.integers(0, 9)))
        if rng.integers(2):
            kw_["mask_out"] = A.new(shape, np.uint8)
        size = int(np.prod(shape))
        if rng.integers(2):
            kw_["block"] = (size, size + int(rng.integers(0, 3)), 0)
        return name, [f32(shape)], kw_, ("out", "mask_out")
    if name == "dropout_undo":
        return name, [f32(shape), A.new(shape, np.uint8)], dict(p=0.5), ("out",)
    if name == "normalize_batch":
        b, c, s, t = (int(v) for v in rng.integers(1, 4, 4))
        h, w = s + int(rng.integers(0, 3)), t + int(rng.integers(0, 3))
        kw_ = dict(scale=0.5)
        if rng.integers(2):
            kw_["offsets"] = A.new((b, 3), np.int32, fill=np.stack(
                [rng.integers(0, h - s + 1, b), rng.integers(0, w - t + 1, b), rng.integers(0, 2, b)], 1))
        if rng.integers(2):
            kw_["shift"] = f32((b, c))
        if rng.integers(2):
            kw_["out"] = f32((b, c, s, t))
        return name, [A.new((b, c, s, t), np.uint8), f32((c, h, w))], kw_, ("out",)
    n, k = (int(v) for v in rng.integers(1, 6, 2))
    labels = A.new((n,), pick(rng, [np.int32, np.int64]), fill=rng.integers(0, k, n))
    if name == "softmax_log_loss":
        return name, [f32((n, k)), labels], {}, ("out",)
    if name == "softmax_log_loss_undo":
        probs = f32((n, k), fill=rng.random((n, k)))
        return name, [probs, labels], dict(scale=1.0), ("out",)
    if name == "top_k_errors":
        return name, [f32((n, k)), labels], dict(ks=(1, int(rng.integers(1, 7)))), ()
    if name == "fc":
        d = int(rng.integers(1, 6))
        return name, [f32((n, d)), f32((k, d)), f32((k,))], {}, ("out",)
    if name == "fc_undo":
        d = int(rng.integers(1, 6))
        return name, [f32((n, k)), f32((n, d)), f32((k, d))], {}, ("grad_x_out", "grad_w_out", "grad_b_out")
    if name == "sgd_update":
        return name, [f32(shape), f32(shape), f32(shape)], dict(lr=0.01), (0, 2)
    if name == "sgd_update_many":
        shapes = [shape, (int(rng.integers(1, 5)),)]
        return name, [[f32(s) for s in shapes], [f32(s) for s in shapes],
                      [f32(s) for s in shapes]], dict(lr=0.01), (0, 2)
    if name == "philox4x32_10":
        return name, [tuple(int(v) for v in rng.integers(0, 2**32, 4, dtype=np.uint64)),
                      tuple(int(v) for v in rng.integers(0, 2**32, 2, dtype=np.uint64))], {}, ()
    if name in ("conv_output_size", "pool_output_size"):
        return name, [int(rng.integers(1, 9)), int(rng.integers(1, 4)), int(rng.integers(1, 4))], {}, ()
    return "switch_dtype", [int(rng.integers(1, 9)), int(rng.integers(1, 9))], {}, ()


OPS = ["filter_acts", "img_acts", "weight_acts", "conv_bias_grad", "max_pool", "max_pool_undo",
       "avg_pool", "avg_pool_undo", "response_norm", "response_norm_undo", "relu", "relu_undo",
       "add", "dropout", "dropout_undo", "softmax_log_loss", "softmax_log_loss_undo",
       "top_k_errors", "fc", "fc_undo", "sgd_update", "sgd_update_many", "philox4x32_10",
       "conv_output_size", "pool_output_size", "switch_dtype", "normalize_batch",
       "response_norm_max_pool", "response_norm_max_pool_undo"]
GEOMETRY_KEYS = {"stride", "padding", "size", "image_size", "filter_size", "groups", "block", "ks",
                 "pool_size", "pool_stride", "pool_padding"}
ARRAY_KEYS = {"out", "bias", "mask_out", "grad_x_out", "grad_w_out", "grad_b_out", "offsets",
              "shift"}


def _bad_array(rng, A, a):
    """A mutation of array `a`: other dtype, rank, shape, layout, or not an array at all."""
    shape = a.shape if isinstance(a, np.ndarray) else (3,)
    kind = int(rng.integers(9))
    if kind == 0:
        return A.new(shape, pick(rng, [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, ">f4"]))
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
    slots += [("k", k) for k in ARRAY_KEYS if k not in kwargs and k in accepted]
    where, key = slots[int(rng.integers(len(slots)))]
    cur = args[key] if where == "a" else kwargs.get(key)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    aliased = False
    if isinstance(cur, list) and cur and isinstance(cur[0], np.ndarray):  # sgd_update_many lists
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
        A.watch(*(kwargs[k] for k in ("bias",) if k in kwargs))
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
