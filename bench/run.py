#!/usr/bin/env python
"""Microbenchmarks of every alexnet_ext op on the AlexNet layer shapes, side by side with PyTorch.

    python bench/run.py                      # CPU, batch 16, every op, PyTorch if installed
    python bench/run.py --batch 128 --ops conv1,conv2
    python bench/run.py --device cuda        # GPU kernels (CUDA builds; needs a GPU)
    python bench/run.py --data               # the data loader (bench/data.py)
    python bench/run.py --step --device cuda # a whole training step of alexnet (bench/train_step.py)

For each op: median wall time over --repeat runs after a warm-up, the achieved rate next to the
napkin math (GFLOP/s for conv/fc from 2*MACs; GB/s for memory-bound ops from the fewest bytes the
op must move: each input read once, each output written once), the same op through PyTorch in the
same process on the same inputs and thread count, and torch_ms / ours_ms ("speedup": > 1 means
alexnet_ext is faster). Results also go to JSON (--json). No numbers are asserted anywhere.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import alexnet_ext
from alexnet_ext import ops
from timing import median_time  # bench/timing.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent

# name: (C_in, H, F, k, stride, pad, groups) — the paper net, one device, groups=2 where columns split
CONV_LAYERS = {
    "conv1": (3, 224, 96, 11, 4, 2, 1),
    "conv2": (96, 27, 256, 5, 1, 2, 2),
    "conv3": (256, 13, 384, 3, 1, 1, 1),
    "conv4": (384, 13, 384, 3, 1, 1, 2),
    "conv5": (384, 13, 256, 3, 1, 1, 2),
}


@dataclass
class Entry:
    name: str              # e.g. "conv1.fprop"
    shape: str             # human-readable shape
    ours: Callable[[], object]
    torch: Callable[[], object] | None = None
    flops: float = 0.0     # useful floating-point operations
    bytes: float = 0.0     # fewest bytes moved
    result: dict = field(default_factory=dict)


def _f32(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def build_entries(batch: int, rng, torch, device: str = "cpu") -> list[Entry]:
    """The benchmark table. Inputs are made on the host, then moved where the op runs."""
    n = batch
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

    for name, (c, h, f, k, s, p, g) in CONV_LAYERS.items():
        hx = _f32(rng, (n, c, h, h))
        hw = _f32(rng, (f, c // g, k, k), 0.01)
        ho = ops.conv_output_size(h, k, s, p)
        hgy = _f32(rng, (n, f, ho, ho))
        x, w, gy = put(hx), put(hw), put(hgy)
        out = empty((n, f, ho, ho))
        gx = empty(hx.shape)
        gw = empty(hw.shape)
        flops = 2.0 * n * f * ho * ho * (c // g) * k * k
        shape = f"{n}x{c}x{h}x{h} * {f}x{c // g}x{k}x{k} s{s} p{p} g{g}"
        kw = dict(stride=s, padding=p, groups=g)
        tx, tw, tgy = (T(hx), T(hw), T(hgy)) if torch else (None, None, None)

        def t_bwd(mask, tx=tx, tw=tw, tgy=tgy, s=s, p=p, g=g):
            return aten.convolution_backward(tgy, tx, tw, None, [s, s], [p, p], [1, 1], False,
                                             [0, 0], g, mask)

        E.append(Entry(f"{name}.fprop", shape,
                       lambda x=x, w=w, out=out, kw=kw: ops.filter_acts(x, w, out=out, **kw),
                       (lambda tx=tx, tw=tw, s=s, p=p, g=g: torch.nn.functional.conv2d(
                           tx, tw, stride=s, padding=p, groups=g)) if torch else None, flops))
        E.append(Entry(f"{name}.bprop_data", shape,
                       lambda gy=gy, w=w, gx=gx, h=h, kw=kw: ops.img_acts(gy, w, image_size=h, out=gx, **kw),
                       (lambda t_bwd=t_bwd: t_bwd([True, False, False])) if torch else None, flops))
        E.append(Entry(f"{name}.bprop_filter", shape,
                       lambda x=x, gy=gy, gw=gw, k=k, kw=kw: ops.weight_acts(x, gy, filter_size=k, out=gw, **kw),
                       (lambda t_bwd=t_bwd: t_bwd([False, True, False])) if torch else None, flops))

    # Memory-bound layers at conv1/conv2's output sizes.
    ha1 = np.maximum(_f32(rng, (n, 96, 55, 55)), 0)
    a1 = put(ha1)
    if hasattr(ops, "response_norm"):
        hg1 = _f32(rng, ha1.shape)
        g1 = put(hg1)
        nb = ha1.nbytes
        lrn = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if torch else None
        ta, tg1 = (T(ha1), T(hg1)) if torch else (None, None)

        def t_lrn_fb(ta=ta, tg1=tg1):
            t = ta.clone().requires_grad_()
            lrn(t).backward(tg1)
        E.append(Entry("lrn1.fprop", f"{n}x96x55x55 n5", lambda: ops.response_norm(a1),
                       (lambda: lrn(ta)) if torch else None, bytes=3 * nb))
        E.append(Entry("lrn1.fprop+bprop", f"{n}x96x55x55 n5",
                       lambda: ops.response_norm_undo(g1, a1, *ops.response_norm(a1)),
                       t_lrn_fb if torch else None, bytes=3 * nb + 5 * nb))
    if hasattr(ops, "max_pool"):
        y, sw = ops.max_pool(a1)
        hgp = _f32(rng, y.shape)
        gp = put(hgp)
        ta, tgp = (T(ha1), T(hgp)) if torch else (None, None)

        def t_pool_fb(ta=ta, tgp=tgp):
            t = ta.clone().requires_grad_()
            torch.nn.functional.max_pool2d(t, 3, 2).backward(tgp)
        E.append(Entry("pool1.fprop", f"{n}x96x55x55 3/2", lambda: ops.max_pool(a1),
                       (lambda: torch.nn.functional.max_pool2d(ta, 3, 2, return_indices=True)) if torch else None,
                       bytes=ha1.nbytes + y.nbytes + sw.nbytes))
        E.append(Entry("pool1.fprop+bprop", f"{n}x96x55x55 3/2",
                       lambda: ops.max_pool_undo(gp, ops.max_pool(a1)[1], image_size=55),
                       t_pool_fb if torch else None,
                       bytes=ha1.nbytes + 2 * (y.nbytes + sw.nbytes) + ha1.nbytes))
    if hasattr(ops, "response_norm_max_pool"):
        # norm1 -> pool1 fused: x read and denoms written (2 full-size tensors) instead of the
        # pair's 4 (x read, y and denoms written, y read back); the undo reads no y (see PERF.md).
        pf, swf, _ = ops.response_norm_max_pool(a1)
        hgpf = _f32(rng, pf.shape)
        gpf = put(hgpf)
        small = pf.nbytes + swf.nbytes
        lrn = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if torch else None
        ta = T(ha1) if torch else None

        def fused_fb():
            _, s_, d_ = ops.response_norm_max_pool(a1)
            return ops.response_norm_max_pool_undo(gpf, s_, a1, d_)

        def t_lrn_pool_fb(ta=ta, tgp=T(hgpf) if torch else None):
            t = ta.clone().requires_grad_()
            torch.nn.functional.max_pool2d(lrn(t), 3, 2).backward(tgp)
        E.append(Entry("norm1+pool1.fprop", f"{n}x96x55x55 n5 3/2",
                       lambda: ops.response_norm_max_pool(a1),
                       (lambda: torch.nn.functional.max_pool2d(lrn(ta), 3, 2, return_indices=True))
                       if torch else None, bytes=2 * ha1.nbytes + small))
        E.append(Entry("norm1+pool1.fprop+bprop", f"{n}x96x55x55 n5 3/2", fused_fb,
                       t_lrn_pool_fb if torch else None,
                       bytes=2 * ha1.nbytes + small + small + 5 * ha1.nbytes))
    if hasattr(ops, "relu"):
        r_out = empty(ha1.shape)
        E.append(Entry("relu1.fprop", f"{n}x96x55x55", lambda: ops.relu(a1, out=r_out),
                       (lambda ta=T(ha1) if torch else None: torch.relu(ta)) if torch else None,
                       bytes=2 * ha1.nbytes))
    if hasattr(ops, "fc"):
        hx6, hw6, hb6, hg6 = (_f32(rng, (n, 9216)), _f32(rng, (4096, 9216), 0.01),
                              _f32(rng, (4096,)), _f32(rng, (n, 4096)))
        x6, w6, b6, g6 = put(hx6), put(hw6), put(hb6), put(hg6)
        o6 = empty((n, 4096))
        fl = 2.0 * n * 9216 * 4096
        if torch:
            tx6, tw6, tb6, tg6 = T(hx6), T(hw6), T(hb6), T(hg6)
        E.append(Entry("fc6.fprop", f"{n}x9216 * 4096x9216", lambda: ops.fc(x6, w6, b6, out=o6),
                       (lambda: torch.nn.functional.linear(tx6, tw6, tb6)) if torch else None, fl))
        E.append(Entry("fc6.bprop", f"{n}x9216 * 4096x9216", lambda: ops.fc_undo(g6, x6, w6),
                       (lambda: (tg6 @ tw6, tg6.t() @ tx6, tg6.sum(0))) if torch else None, 2 * fl))
    if hasattr(ops, "dropout"):
        hx7 = _f32(rng, (n, 4096))
        x7 = put(hx7)
        tx7 = T(hx7) if torch else None
        E.append(Entry("dropout7.fprop", f"{n}x4096 p0.5", lambda: ops.dropout(x7, p=0.5, seed=1),
                       (lambda: torch.nn.functional.dropout(tx7, 0.5, True)) if torch else None,
                       bytes=2 * hx7.nbytes + hx7.size))
        # the split net's dropout: one column's block of every image
        x7c = put(np.ascontiguousarray(hx7[:, 2048:]))
        E.append(Entry("dropout7.column", f"{n}x2048 of {n}x4096", lambda: ops.dropout(
            x7c, p=0.5, seed=1, block=(2048, 4096, 2048)), None, bytes=hx7.nbytes + hx7.size // 2))
    if hasattr(ops, "add"):
        # gradients meeting at a column's pool2 output (the split net's conv3 reads it twice)
        ha = _f32(rng, (n, 128, 13, 13))
        a2, b2 = put(ha), put(_f32(rng, ha.shape))
        ta2, tb2 = (T(ha), T(ha.copy())) if torch else (None, None)
        E.append(Entry("add.grad", f"{n}x128x13x13 +=", lambda: ops.add(a2, b2, out=a2),
                       (lambda: ta2.add_(tb2)) if torch else None, bytes=3 * ha.nbytes))
    if hasattr(ops, "softmax_log_loss"):
        hz = _f32(rng, (n, 1000))
        hlab = rng.integers(0, 1000, n).astype(np.int64)
        z, lab = put(hz), put(hlab)
        tz, tlab = (T(hz), T(hlab)) if torch else (None, None)

        def t_sm(tz=tz, tlab=tlab):
            t = tz.clone().requires_grad_()
            torch.nn.functional.cross_entropy(t, tlab).backward()
        E.append(Entry("softmax8.fprop+bprop", f"{n}x1000",
                       lambda: ops.softmax_log_loss_undo(ops.softmax_log_loss(z, lab)[1], lab),
                       t_sm if torch else None, bytes=3 * hz.nbytes))
    if hasattr(ops, "sgd_update"):
        hwp = _f32(rng, (4096, 9216), 0.01)
        hgp_ = _f32(rng, hwp.shape, 0.01)
        wp, gp_, vp = put(hwp), put(hgp_), put(np.zeros_like(hwp))
        if torch:
            tw_, tg_ = T(hwp.copy()), T(hgp_)
            topt = torch.optim.SGD([torch.nn.Parameter(tw_)], lr=0.01, momentum=0.9, weight_decay=5e-4)
            topt.param_groups[0]["params"][0].grad = tg_
        E.append(Entry("sgd.fc6_weights", "4096x9216",
                       lambda: ops.sgd_update(wp, gp_, vp, lr=1e-6, momentum=0.9, weight_decay=5e-4),
                       (lambda: topt.step()) if torch else None, bytes=5 * hwp.nbytes))
    return E


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
                # The baseline the project races: cuDNN fp32 with TF32 off, autotuned.
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cudnn.benchmark = True

        def sync():
            cuda.synchronize()
            if torch is not None:
                torch.cuda.synchronize()
        inner = 10
    else:
        sync = lambda: None  # CPU ops return when done
        inner = 1
    entries = build_entries(args.batch, rng, torch, args.device)
    if args.ops:
        wanted = args.ops.split(",")
        entries = [e for e in entries if any(e.name.startswith(w) for w in wanted)]

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
    return {e.name: dict(shape=e.shape, **e.result) for e in entries}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="which kernels to time (default: cpu)")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size (default: 16 on cpu, 128 on cuda)")
    ap.add_argument("--ops", default="", help="comma-separated name prefixes, e.g. conv1,lrn (default: all)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per op; the median is shown (default: 5)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both libraries (default: all)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--data", action="store_true", help="benchmark the data loader instead (bench/data.py)")
    ap.add_argument("--step", action="store_true",
                    help="benchmark a whole training step instead (bench/train_step.py)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    ap.add_argument("--json", default=None,
                    help="write results here (default: bench/results/<date>-<device>.json)")
    sys.path.insert(0, str(HERE))
    import data as data_bench  # bench/data.py: the loader benchmark and its options
    import train_step as step_bench  # bench/train_step.py: a whole SGD step of a net
    data_bench.add_arguments(ap)
    step_bench.add_arguments(ap)
    args = ap.parse_args(argv)

    if args.threads:
        alexnet_ext.set_num_threads(args.threads)
    if args.device == "cuda" and not alexnet_ext.cuda_available():
        print(f"--device cuda: no usable GPU: {alexnet_ext.cuda_status()['reason']}", file=sys.stderr)
        return 2
    if args.device == "cuda" and alexnet_ext.cuda_status().get("emulated"):
        print("# the GPU is tools/cuda_emu, a CPU emulation: these timings say nothing about a GPU")
    if args.batch is None:
        args.batch = 128 if args.device == "cuda" else 16
    if args.batch < 1 or args.repeat < 1:
        ap.error("--batch and --repeat must be >= 1")

    now = dt.datetime.now().astimezone()
    header = {
        "date": now.isoformat(timespec="seconds"),
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": alexnet_ext.get_num_threads(),
        "alexnet_ext": alexnet_ext.__version__,
        "command": " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    try:
        import torch
        header["torch"] = torch.__version__
    except ImportError:
        header["torch"] = None
    print(f"# {header['date']}  {args.device}  {header['cores']} cores, {header['threads']} threads  "
          f"alexnet_ext {header['alexnet_ext']}  torch {header['torch']}  batch {args.batch}")

    if args.data:
        results = data_bench.run(args)
    elif args.step:
        results = step_bench.run(args)
    else:
        results = run_ops(args)

    path = Path(args.json) if args.json else HERE / "results" / f"{now:%Y-%m-%d}-{args.device}{'-data' if args.data else '-step' if args.step else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"header": header, "batch": args.batch, "results": results}, indent=1))
    print(f"# results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
