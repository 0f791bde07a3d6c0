#!/usr/bin/env python
"""Microbenchmarks of every alexnet_ext op on the AlexNet layer shapes, side by side with PyTorch.

    python bench/run.py                      # CPU, batch 16, every op, PyTorch if installed
    python bench/run.py --batch 128 --ops conv1,conv2
    python bench/run.py --device cuda        # GPU kernels (CUDA builds; needs a GPU)
    python bench/run.py --device cuda --precision bf16 --ops conv   # tensor-core convolution
    python bench/run.py --data               # the data loader (bench/data.py)
    python bench/run.py --step --device cuda # a whole training step of alexnet (bench/train_step.py)

For each op: median wall time over --repeat runs after a warm-up, the achieved rate next to the
napkin math (GFLOP/s for conv/fc from 2*MACs; GB/s for memory-bound ops from the fewest bytes the
op must move: each input read once, each output written once), the same op through PyTorch in the
same process on the same inputs and thread count, and torch_ms / ours_ms ("speedup": > 1 means
alexnet_ext is faster). Every public op of alexnet_ext.ops has an entry, on the shapes of
alexnet_ext._shapes (the paper net). The conv passes are fprop, bprop_data (imgActs) and
bprop_filter (weightActs), as everywhere in bench/ and docs/PERF.md. Results also go to JSON in
the working directory (or --out). No numbers are asserted anywhere.

--precision (GPU only) sets the convolutions' numerics on both sides: tf32 is ours with
precision="tf32" against cuDNN with allow_tf32; bf16 is ours on bf16 operands (fp32 accumulate;
fprop and bprop_data write bf16 (out_dtype), bprop_filter fp32, the bias gradient reads the bf16
gradient) against cuDNN on bf16 channels-last tensors. The other ops stay fp32 on both sides.
--layout nhwc runs our conv passes on channels-innermost arrays (ops' layout="NHWC"; on the GPU
all three passes in tf32/bf16 have NHWC tensor-core kernels, fp32 NHWC runs version 1's loops)
beside PyTorch's channels_last.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder's modules, from any cwd
try:
    import alexnet_ext  # noqa: E402
except ModuleNotFoundError:  # not installed: the source checkout's package (built module copied in)
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "python"))
    import alexnet_ext  # noqa: E402
import report  # noqa: E402  bench/report.py: header and where results go
from alexnet_ext import _shapes as S  # noqa: E402  AlexNet's layer shapes
from alexnet_ext import ops  # noqa: E402
from timing import median_time  # noqa: E402  bench/timing.py

# Public functions of alexnet_ext.ops that are helpers, not ops (no kernel to time).
NOT_OPS = {"conv_output_size", "pool_output_size", "switch_dtype", "philox4x32_10"}
# The conv passes, named the same in every table (PERF.md, bench/conv_cuda.py, the baselines).
CONV_PASSES = ("fprop", "bprop_data", "bprop_filter")


@dataclass
class Entry:
    name: str              # <layer>.<pass>, e.g. "conv1.fprop"
    shape: str             # human-readable shape
    ops: tuple             # the alexnet_ext.ops functions it times
    ours: Callable[[], object]
    torch: Callable[[], object] | None = None
    flops: float = 0.0     # useful floating-point operations
    bytes: float = 0.0     # fewest bytes moved
    result: dict = field(default_factory=dict)


def _f32(rng, shape, scale=1.0):
    """Normal(0, scale^2) float32. Past 2^20 elements a random 4 MB block repeats: the values do
    not change the timings, and drawing 150 MB of normals takes seconds."""
    size = int(np.prod(shape))
    a = rng.standard_normal(min(size, 1 << 20), dtype=np.float32)
    if scale != 1.0:
        a *= np.float32(scale)
    return np.resize(a, shape) if size > a.size else a.reshape(shape)


def build_entries(batch: int, rng, torch, device: str = "cpu", only=(),
                  precision: str = "fp32", layout: str = "NCHW") -> list[Entry]:
    """The benchmark table: every op of alexnet_ext.ops on AlexNet's shapes (alexnet_ext._shapes).
    Inputs are made on the host, then moved where the op runs. ``only``: name prefixes (--ops);
    the inputs of groups that no prefix can select are not made (fc6's weights are 151 MB).
    ``precision``, ``layout``: of the conv passes (see the module docstring)."""
    n = batch

    def want(*prefixes):
        return not only or any(p.startswith(w) or w.startswith(p) for p in prefixes for w in only)

    E: list[Entry] = []
    if device == "cuda":
        from alexnet_ext import cuda
        put = cuda.to_device
        empty = lambda shape, dtype=np.float32: cuda.empty(shape, dtype)
        T = (lambda a: torch.from_numpy(a).cuda()) if torch else None
    else:
        put = lambda a: a
        empty = lambda shape, dtype=np.float32: np.empty(shape, dtype)
        T = (lambda a: torch.from_numpy(a)) if torch else None
    aten = torch.ops.aten if torch else None
    F = torch.nn.functional if torch else None

    def entry(name, shape, op_names, ours, theirs=None, flops=0.0, nbytes=0.0):
        E.append(Entry(name, shape, tuple(op_names), ours, theirs if torch else None, flops, nbytes))

    for name, L in S.CONV.items():
        if not want(f"{name}."):
            continue
        hx, hw, hgy = _f32(rng, L.images(n)), _f32(rng, L.filters(), 0.01), _f32(rng, L.outputs(n))
        # ours in NHWC: the same tensors with channels innermost, made once here
        mine = ((lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if layout == "NHWC"
                else (lambda a: a))
        x, w, gy = put(mine(hx)), put(mine(hw)), put(mine(hgy))
        out, gx, gw, gb = empty(gy.shape), empty(x.shape), empty(w.shape), empty((L.f,))
        gy32 = gy
        if precision == "bf16":  # bf16 operands (rounded on the GPU); the activations and their
            # gradients written in bf16 as cuDNN's (out_dtype), the filter gradient in fp32
            x, w, gy = (ops.cast(a, cuda.bfloat16) for a in (x, w, gy))
            out, gx, gy32 = empty(gy.shape, cuda.bfloat16), empty(x.shape, cuda.bfloat16), gy
        flops = L.flops(n)
        shape = (f"{n}x{L.c}x{L.h}x{L.h} * {'x'.join(map(str, L.filters()))} "
                 f"s{L.stride} p{L.padding} g{L.groups}")
        kw, s, p, g = L.kwargs, L.stride, L.padding, L.groups
        tx, tw, tgy = (T(hx), T(hw), T(hgy)) if torch else (None, None, None)
        tgy32 = tgy
        if torch and (precision == "bf16" or layout == "NHWC"):  # bf16: what AMP users run
            dt = torch.bfloat16 if precision == "bf16" else torch.float32
            tx, tw, tgy = (t.to(dt).contiguous(memory_format=torch.channels_last)
                           for t in (tx, tw, tgy))

        def t_bwd(mask, tx=tx, tw=tw, tgy=tgy, s=s, p=p, g=g):
            return aten.convolution_backward(tgy, tx, tw, None, [s, s], [p, p], [1, 1], False,
                                             [0, 0], g, mask)

        kw = dict(kw, precision=precision) if precision != "fp32" else kw
        kw = dict(kw, layout=layout) if layout != "NCHW" else kw
        bias_kw = {"layout": layout} if layout != "NCHW" else {}
        entry(f"{name}.fprop", shape, ["filter_acts"],
              lambda x=x, w=w, out=out, kw=kw: ops.filter_acts(x, w, out=out, **kw),
              lambda tx=tx, tw=tw, s=s, p=p, g=g: F.conv2d(tx, tw, stride=s, padding=p, groups=g),
              flops)
        entry(f"{name}.bprop_data", shape, ["img_acts"],
              lambda gy=gy, w=w, gx=gx, h=L.h, kw=kw: ops.img_acts(gy, w, image_size=h, out=gx, **kw),
              lambda t_bwd=t_bwd: t_bwd([True, False, False]), flops)
        entry(f"{name}.bprop_filter", shape, ["weight_acts"],
              lambda x=x, gy=gy, gw=gw, k=L.k, kw=kw: ops.weight_acts(x, gy, filter_size=k, out=gw,
                                                                      **kw),
              lambda t_bwd=t_bwd: t_bwd([False, True, False]), flops)
        entry(f"{name}.bprop_bias", f"{n}x{L.f}x{L.out}x{L.out}", ["conv_bias_grad"],
              lambda gy=gy32, gb=gb: ops.conv_bias_grad(gy, out=gb, **bias_kw),
              lambda tgy=tgy32: tgy.sum((0, 2, 3)), nbytes=hgy.nbytes + 4 * L.f)

    # Memory-bound layers at conv1's output size (norm1, pool1 and relu1 see it).
    if want("lrn1.", "pool1.", "avgpool1.", "relu1."):
        c1 = f"{n}x" + "x".join(map(str, S.NORM1))
        ha1 = np.maximum(_f32(rng, (n, *S.NORM1)), 0)
        hg1 = _f32(rng, ha1.shape)
        a1, g1 = put(ha1), put(hg1)
        nb = ha1.nbytes
        ta, tg1 = (T(ha1), T(hg1)) if torch else (None, None)

        lrn = (torch.nn.LocalResponseNorm(S.LRN["size"], alpha=S.LRN["alpha"] * S.LRN["size"],
                                          beta=S.LRN["beta"], k=S.LRN["k"]) if torch else None)

        def t_fb(layer, tg):  # forward + backward through a torch function of ta
            t = ta.clone().requires_grad_()
            layer(t).backward(tg)

        entry("lrn1.fprop", f"{c1} n{S.LRN['size']}", ["response_norm"],
              lambda: ops.response_norm(a1, **S.LRN), lambda: lrn(ta), nbytes=3 * nb)
        entry("lrn1.fprop+bprop", f"{c1} n{S.LRN['size']}", ["response_norm", "response_norm_undo"],
              lambda: ops.response_norm_undo(g1, a1, *ops.response_norm(a1, **S.LRN), **S.LRN),
              lambda: t_fb(lrn, tg1), nbytes=3 * nb + 5 * nb)

        size, stride = S.POOL["size"], S.POOL["stride"]
        y, sw = ops.max_pool(a1, **S.POOL)
        hgp = _f32(rng, y.shape)
        gp = put(hgp)
        tgp = T(hgp) if torch else None
        ybytes, sbytes = 4 * np.prod(y.shape), np.dtype(sw.dtype).itemsize * np.prod(y.shape)
        pool = f"{c1} {size}/{stride}"
        entry("pool1.fprop", pool, ["max_pool"], lambda: ops.max_pool(a1, **S.POOL),
              lambda: F.max_pool2d(ta, size, stride, return_indices=True),
              nbytes=nb + ybytes + sbytes)
        entry("pool1.fprop+bprop", pool, ["max_pool", "max_pool_undo"],
              lambda: ops.max_pool_undo(gp, ops.max_pool(a1, **S.POOL)[1], image_size=S.NORM1[1]),
              lambda: t_fb(lambda t: F.max_pool2d(t, size, stride), tgp),
              nbytes=nb + 2 * (ybytes + sbytes) + nb)
        # Average pooling at the same shape (AlexNet pools by max; cifar and lenet5 average).
        entry("avgpool1.fprop", pool, ["avg_pool"], lambda: ops.avg_pool(a1, **S.POOL),
              lambda: F.avg_pool2d(ta, size, stride), nbytes=nb + ybytes)
        entry("avgpool1.fprop+bprop", pool, ["avg_pool", "avg_pool_undo"],
              lambda: ops.avg_pool_undo(ops.avg_pool(a1, **S.POOL), image_size=S.NORM1[1],
                                        **S.POOL),
              lambda: t_fb(lambda t: F.avg_pool2d(t, size, stride), tgp),
              nbytes=2 * (nb + ybytes))

        r_out, r_grad = empty(ha1.shape), empty(ha1.shape)
        entry("relu1.fprop", c1, ["relu"], lambda: ops.relu(a1, out=r_out), lambda: torch.relu(ta),
              nbytes=2 * nb)
        entry("relu1.bprop", c1, ["relu_undo"], lambda: ops.relu_undo(g1, a1, out=r_grad),
              lambda: aten.threshold_backward(tg1, ta, 0.0), nbytes=3 * nb)

    # norm1 -> pool1 fused: x read and denoms written (2 full-size tensors) instead of the pair's
    # 4 (x read, y and denoms written, y read back); the undo reads no y (see PERF.md).
    if want("norm1+pool1."):
        c1 = f"{n}x" + "x".join(map(str, S.NORM1))
        hf = np.maximum(_f32(rng, (n, *S.NORM1)), 0)
        af = put(hf)
        pf, swf, _ = ops.response_norm_max_pool(af, **S.LRN, pool_size=S.POOL["size"],
                                                pool_stride=S.POOL["stride"])
        hgpf = _f32(rng, pf.shape)
        gpf = put(hgpf)
        small = 4 * np.prod(pf.shape) + np.dtype(swf.dtype).itemsize * np.prod(pf.shape)
        lrn_f = (torch.nn.LocalResponseNorm(S.LRN["size"], alpha=S.LRN["alpha"] * S.LRN["size"],
                                            beta=S.LRN["beta"], k=S.LRN["k"]) if torch else None)
        taf, tgpf = (T(hf), T(hgpf)) if torch else (None, None)
        fwd = lambda: ops.response_norm_max_pool(af, **S.LRN, pool_size=S.POOL["size"],
                                                 pool_stride=S.POOL["stride"])

        def fused_fb():
            _, s_, d_ = fwd()
            return ops.response_norm_max_pool_undo(gpf, s_, af, d_, **S.LRN)

        def t_lrn_pool_fb():
            t = taf.clone().requires_grad_()
            F.max_pool2d(lrn_f(t), S.POOL["size"], S.POOL["stride"]).backward(tgpf)

        pair = f"{c1} n{S.LRN['size']} {S.POOL['size']}/{S.POOL['stride']}"
        entry("norm1+pool1.fprop", pair, ["response_norm_max_pool"], fwd,
              lambda: F.max_pool2d(lrn_f(taf), S.POOL["size"], S.POOL["stride"],
                                   return_indices=True), nbytes=2 * hf.nbytes + small)
        entry("norm1+pool1.fprop+bprop", pair,
              ["response_norm_max_pool", "response_norm_max_pool_undo"], fused_fb, t_lrn_pool_fb,
              nbytes=2 * hf.nbytes + 2 * small + 5 * hf.nbytes)
    if want("fc6."):
        d_in, d_out = S.FC["fc6"]
        hx6, hw6 = _f32(rng, (n, d_in)), _f32(rng, (d_out, d_in), 0.01)
        hb6, hg6 = _f32(rng, (d_out,)), _f32(rng, (n, d_out))
        x6, w6, b6, g6 = put(hx6), put(hw6), put(hb6), put(hg6)
        o6 = empty((n, d_out))
        fl = 2.0 * n * d_in * d_out
        tx6, tw6, tb6, tg6 = (T(hx6), T(hw6), T(hb6), T(hg6)) if torch else (None,) * 4
        fc6 = f"{n}x{d_in} * {d_out}x{d_in}"
        entry("fc6.fprop", fc6, ["fc"], lambda: ops.fc(x6, w6, b6, out=o6),
              lambda: F.linear(tx6, tw6, tb6), fl)
        entry("fc6.bprop", fc6, ["fc_undo"], lambda: ops.fc_undo(g6, x6, w6),
              lambda: (tg6 @ tw6, tg6.t() @ tx6, tg6.sum(0)), 2 * fl)

    if want("dropout7."):
        d7 = S.FC["fc7"][0]
        hx7 = _f32(rng, (n, d7))
        x7 = put(hx7)
        _, m7 = ops.dropout(x7, p=S.DROPOUT_P, seed=1)
        tx7 = T(hx7) if torch else None
        tm7 = T((np.random.default_rng(1).random(hx7.shape) >= S.DROPOUT_P).astype(np.float32)) \
            if torch else None
        entry("dropout7.fprop", f"{n}x{d7} p{S.DROPOUT_P}", ["dropout"],
              lambda: ops.dropout(x7, p=S.DROPOUT_P, seed=1),
              lambda: F.dropout(tx7, S.DROPOUT_P, True), nbytes=2 * hx7.nbytes + hx7.size)
        entry("dropout7.bprop", f"{n}x{d7} p{S.DROPOUT_P}", ["dropout_undo"],
              lambda: ops.dropout_undo(x7, m7, p=S.DROPOUT_P),
              lambda: tx7 * tm7 * (1 / (1 - S.DROPOUT_P)), nbytes=2 * hx7.nbytes + hx7.size)
        # the split net's dropout: one column's block of every image
        half = d7 // 2
        x7c = put(np.ascontiguousarray(hx7[:, half:]))
        entry("dropout7.column", f"{n}x{half} of {n}x{d7}", ["dropout"],
              lambda: ops.dropout(x7c, p=S.DROPOUT_P, seed=1, block=(half, d7, half)),
              nbytes=hx7.nbytes + hx7.size // 2)

    # gradients meeting at a column's pool2 output (the split net's conv3 reads it twice)
    if want("add."):
        ha = _f32(rng, (n, *S.POOL2_COLUMN))
        a2, b2 = put(ha), put(_f32(rng, ha.shape))
        ta2, tb2 = (T(ha), T(ha.copy())) if torch else (None, None)
        entry("add.grad", f"{n}x" + "x".join(map(str, S.POOL2_COLUMN)) + " +=", ["add"],
              lambda: ops.add(a2, b2, out=a2), lambda: ta2.add_(tb2), nbytes=3 * ha.nbytes)

    if want("cast."):  # float32 -> bfloat16: making the operands of precision="bf16" convs
        hc, bf16 = _f32(rng, (n, *S.POOL2_COLUMN)), alexnet_ext.cuda.bfloat16
        c32, cbf, tc = put(hc), empty(hc.shape, bf16), (T(hc) if torch else None)
        entry("cast.bf16", f"{n}x" + "x".join(map(str, S.POOL2_COLUMN)), ["cast"],
              lambda: ops.cast(c32, bf16, out=cbf), lambda: tc.to(torch.bfloat16),
              nbytes=hc.nbytes * 3 // 2)

    if want("softmax8."):
        hz = _f32(rng, (n, S.CLASSES))
        hlab = rng.integers(0, S.CLASSES, n).astype(np.int64)
        z, lab = put(hz), put(hlab)
        probs = ops.softmax_log_loss(z, lab)[1]
        tz, tlab = (T(hz), T(hlab)) if torch else (None, None)

        def t_sm():
            t = tz.clone().requires_grad_()
            F.cross_entropy(t, tlab).backward()
        entry("softmax8.fprop+bprop", f"{n}x{S.CLASSES}", ["softmax_log_loss", "softmax_log_loss_undo"],
              lambda: ops.softmax_log_loss_undo(ops.softmax_log_loss(z, lab)[1], lab), t_sm,
              nbytes=3 * hz.nbytes)
        entry("softmax8.top5", f"{n}x{S.CLASSES} k=1,5", ["top_k_errors"],
              lambda: ops.top_k_errors(probs, lab, (1, 5)),
              lambda: (tz.topk(5, 1).indices != tlab[:, None]).all(1).sum().item(), nbytes=hz.nbytes)

    sgd = dict(momentum=0.9, weight_decay=5e-4)  # the paper's
    if want("sgd.fc6_weights"):
        d_in, d_out = S.FC["fc6"]
        hwp = _f32(rng, (d_out, d_in), 0.01)
        hgp_ = _f32(rng, hwp.shape, 0.01)
        wp, gp_, vp = put(hwp), put(hgp_), put(np.zeros_like(hwp))
        topt = None
        if torch:
            topt = torch.optim.SGD([torch.nn.Parameter(T(hwp.copy()))], lr=0.01, **sgd)
            topt.param_groups[0]["params"][0].grad = T(hgp_)
        entry("sgd.fc6_weights", f"{d_out}x{d_in}", ["sgd_update"],
              lambda: ops.sgd_update(wp, gp_, vp, lr=1e-6, **sgd), lambda: topt.step(),
              nbytes=5 * hwp.nbytes)
    # every conv layer's weights and biases in one call (many small arrays: launch overhead)
    if want("sgd.conv_params"):
        shapes = [s for L in S.CONV.values() for s in (L.filters(), (L.f,))]
        hws = [_f32(rng, s, 0.01) for s in shapes]
        ws, gs, vs = ([put(a) for a in hws], [put(_f32(rng, a.shape, 0.01)) for a in hws],
                      [put(np.zeros_like(a)) for a in hws])
        topt_many = None
        if torch:
            params = [torch.nn.Parameter(T(a.copy())) for a in hws]
            for prm, a in zip(params, hws):
                prm.grad = T(_f32(rng, a.shape, 0.01))
            topt_many = torch.optim.SGD(params, lr=0.01, **sgd)
        entry("sgd.conv_params", f"{len(shapes)} arrays", ["sgd_update_many"],
              lambda: ops.sgd_update_many(ws, gs, vs, lr=1e-6, **sgd), lambda: topt_many.step(),
              nbytes=5 * sum(a.nbytes for a in hws))
    # the input batch: uint8 crops to float32 (mean crop, lighting, scale), as DeviceFeed does;
    # torch does the same arithmetic with one mean crop for all images (no per-image crops)
    if want("input.normalize_batch"):
        hxb = rng.integers(0, 256, (n, 3, 224, 224), dtype=np.uint8)
        hmb = (rng.random((3, 256, 256), dtype=np.float32) * 255).astype(np.float32)
        hob = np.stack([rng.integers(0, 33, n), rng.integers(0, 33, n), rng.integers(0, 2, n)],
                       1).astype(np.int32)
        hsb = _f32(rng, (n, 3), 4.0)
        xb, mb, ob, sb, outb = put(hxb), put(hmb), put(hob), put(hsb), empty(hxb.shape)
        txb, tmb = ((T(hxb), T(np.ascontiguousarray(hmb[:, 16:240, 16:240]))) if torch
                    else (None, None))
        entry("input.normalize_batch", f"{n}x3x224x224 uint8", ["normalize_batch"],
              lambda: ops.normalize_batch(xb, mb, ob, sb, scale=1 / 255, out=outb),
              lambda: (txb.float() - tmb) * (1 / 255), nbytes=hxb.nbytes + 4 * hxb.size)
    return E


def missing_ops(entries: list[Entry]) -> list[str]:
    """The public ops of alexnet_ext.ops that no entry times (should be none)."""
    timed = {o for e in entries for o in e.ops}
    return sorted(set(ops.__all__) - NOT_OPS - timed)


def run_ops(args) -> dict:
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F811
            torch.set_num_threads(alexnet_ext.get_num_threads())
            torch.backends.mkldnn.enabled = True
        except ImportError:
            print("PyTorch is not installed: printing alexnet_ext timings only")
    rng = np.random.default_rng(args.seed)
    if args.device == "cuda":
        from alexnet_ext import cuda
        if torch is not None:
            if not torch.cuda.is_available():
                print("PyTorch has no CUDA here: printing alexnet_ext timings only")
                torch = None
            else:
                # The baseline the project races: cuDNN autotuned at our precision (TF32 only
                # for the convolutions with --precision tf32; matmuls stay fp32, as our fc).
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
                torch.backends.cudnn.benchmark = True

        def sync():
            cuda.synchronize()
            if torch is not None:
                torch.cuda.synchronize()
        inner = 10
    else:
        sync = lambda: None  # CPU ops return when done
        inner = 1
    wanted = args.ops.split(",") if args.ops else []
    entries = build_entries(args.batch, rng, torch, args.device, only=wanted,
                            precision=args.precision, layout=args.layout.upper())
    if wanted:
        entries = [e for e in entries if any(e.name.startswith(w) for w in wanted)]
        if not entries:
            print(f"--ops {args.ops}: no such entry", file=sys.stderr)

    print(f"{'op':<22}{'shape':<34}{'ours ms':>9}{'rate':>13}{'torch ms':>10}{'speedup':>9}")
    for e in entries:
        t = median_time(e.ours, args.repeat, sync, inner) * 1e3
        rate = (f"{e.flops / t / 1e6:8.1f} GF/s" if e.flops else f"{e.bytes / t / 1e6:8.2f} GB/s")
        e.result = {"ms": t, "gflops": e.flops / t / 1e6 if e.flops else None,
                    "gbps": e.bytes / t / 1e6 if e.bytes else None}
        line = f"{e.name:<22}{e.shape:<34}{t:9.2f}{rate:>13}"
        if e.torch is not None:
            tt = median_time(e.torch, args.repeat, sync, inner) * 1e3
            e.result.update(torch_ms=tt, speedup=tt / t)
            line += f"{tt:10.2f}{tt / t:8.2f}x"
        print(line, flush=True)
    return {e.name: dict(shape=e.shape, ops=list(e.ops), **e.result) for e in entries}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="which kernels to time (default: cpu)")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"batch size (default: 16 on cpu, {S.BATCH} on cuda)")
    ap.add_argument("--ops", default="", help="comma-separated name prefixes, e.g. conv1,lrn (default: all)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per op; the median is shown (default: 5)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both libraries (default: all)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--data", action="store_true", help="benchmark the data loader instead (bench/data.py)")
    ap.add_argument("--step", action="store_true",
                    help="benchmark a whole training step instead (bench/train_step.py)")
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                    help="numerics of the convolutions on both sides, GPU only (default: fp32; "
                         "see above)")
    ap.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw",
                    help="layout of our conv operands (nhwc: channels innermost, as PyTorch's "
                         "channels_last, which the PyTorch side then uses too; default: nchw)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    ap.add_argument("--out", default=None,
                    help="write the results (JSON) here (default: ./bench-<date>-<device>.json, "
                         "./bench_data-... with --data, ./bench_step-... with --step)")
    import data as data_bench  # bench/data.py: the loader benchmark and its options
    import train_step as step_bench  # bench/train_step.py: a whole SGD step of a net
    data_bench.add_arguments(ap)
    step_bench.add_arguments(ap)
    args = ap.parse_args(argv)

    if args.precision != "fp32" and (args.device != "cuda" or args.data):
        ap.error(f"--precision {args.precision}: the tensor-core convolutions and bfloat16 run on "
                 "the GPU only (with --device cuda, not with --data)")
    if args.threads:
        alexnet_ext.set_num_threads(args.threads)
    if args.device == "cuda" and not alexnet_ext.cuda_available():
        print(f"--device cuda: no usable GPU: {alexnet_ext.cuda_status()['reason']}", file=sys.stderr)
        return 2
    if args.device == "cuda" and alexnet_ext.cuda_status().get("emulated"):
        print("# the GPU is tools/cuda_emu, a CPU emulation: these timings say nothing about a GPU")
    if args.batch is None:
        args.batch = S.BATCH if args.device == "cuda" else 16
    if args.batch < 1 or args.repeat < 1:
        ap.error("--batch and --repeat must be >= 1")

    header = report.header(args.device, "bench/run.py", argv)
    header["precision"] = args.precision
    print(f"# {header['date']}  {args.device}  {header['cores']} cores, {header['threads']} threads  "
          f"alexnet_ext {header['alexnet_ext']}  torch {header['torch']}  batch {args.batch}  "
          f"conv precision {args.precision}")

    if args.data:
        kind, results = "bench_data", data_bench.run(args)
    elif args.step:
        kind, results = "bench_step", step_bench.run(args)
    else:
        kind = "bench" if args.precision == "fp32" else f"bench_{args.precision}"
        results = run_ops(args)
    report.write(report.output_path(args.out, kind, args.device),
                 {"header": header, "batch": args.batch, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
