#!/usr/bin/env python
"""GPU convolution benchmark: the three passes of every AlexNet conv layer (alexnet_ext._shapes)
at batch 128, for each kernel version, next to the time floors and the cuDNN baseline
(docs/CUDA_CONV.md).

    python bench/conv_cuda.py                       # fast kernels (version 2)
    python bench/conv_cuda.py --versions 1,2        # also the reference kernels
    python bench/conv_cuda.py --layers conv2 --repeat 50 --torch
    python bench/conv_cuda.py --precision bf16 --torch   # tensor cores (version 3) vs cuDNN bf16

Passes: fprop (filterActs), bprop_data (imgActs), bprop_filter (weightActs), the names of
bench/run.py, docs/PERF.md and the baseline file. Times: median_time (bench/timing.py) of 10
back-to-back launches per trial, after a warm-up. --torch also times PyTorch's fp32 conv (cuDNN,
TF32 off) in this process. The cuDNN column comes from the baseline JSON (--baseline; by default
the H100 file in ../shared/baselines beside the repository, left empty when it is absent).
--precision tf32|bf16 times the tensor-core kernels (version 3, through the ops' precision=
argument; bf16 operands, fp32 results) against the baseline's and PyTorch's convolutions at the
same precision (allow_tf32; bf16 channels-last); --versions does not apply there.
Nothing is asserted; the numbers go to JSON in the working directory (or --out).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder's modules, from any cwd
import alexnet_ext  # noqa: E402
import report  # noqa: E402  bench/report.py
from alexnet_ext import _shapes as S  # noqa: E402
from alexnet_ext import cuda, ops  # noqa: E402
from timing import median_time  # noqa: E402

BASELINE = report.REPO.parent / "shared" / "baselines" / "h100-pytorch-2026-11-22.json"
PEAK_FLOPS, PEAK_BYTES = 51.3e12, 3.0e12  # H100 SXM fp32 SIMT (measured), HBM3 copy rate
TF32_PEAK, BF16_PEAK = 406.7e12, 785.6e12   # H100 mma rates measured for the baseline file
PASSES = ("fprop", "bprop_data", "bprop_filter")


def load_baseline(path: Path) -> dict:
    """per_layer of the baseline file, or {} (with a note) when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())["per_layer"]
    except (OSError, ValueError, KeyError) as e:
        print(f"# no cuDNN baseline ({path}: {e.__class__.__name__}); that column stays empty")
        return {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=S.BATCH)
    ap.add_argument("--layers", default=",".join(S.CONV), help="comma-separated (default: all)")
    ap.add_argument("--versions", default="2", help="comma-separated kernel versions (1, 2)")
    ap.add_argument("--repeat", type=int, default=5, help="timed trials; the median is shown")
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                    help="fp32: the --versions kernels; tf32/bf16: the tensor-core kernels")
    ap.add_argument("--torch", action="store_true",
                    help="also time PyTorch (cuDNN at the same precision)")
    ap.add_argument("--baseline", type=Path, default=BASELINE,
                    help="the cuDNN baseline JSON (default: ../shared/baselines/ beside the repo)")
    ap.add_argument("--out", help="write the results (JSON) here (default: ./conv_cuda-<date>-cuda.json)")
    args = ap.parse_args(argv)
    layers = args.layers.split(",")
    if unknown := [name for name in layers if name not in S.CONV]:
        ap.error(f"--layers: unknown {unknown}; choose from {', '.join(S.CONV)}")
    if args.batch < 1 or args.repeat < 1:
        ap.error("--batch and --repeat must be >= 1")
    if not alexnet_ext.cuda_available():
        print(f"no usable GPU: {alexnet_ext.cuda_status()['reason']}", file=sys.stderr)
        return 2
    base = load_baseline(args.baseline) if args.batch == 128 else {}
    # tf32/bf16 name their kernels through precision= (version 3), whatever set_conv_kernel says
    versions = [int(t) for t in args.versions.split(",")] if args.precision == "fp32" else [3]
    peak = {"fp32": PEAK_FLOPS, "tf32": TF32_PEAK, "bf16": BF16_PEAK}[args.precision]
    torch = None
    if args.torch:
        import torch  # noqa: F811
        torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True

    def sync():
        cuda.synchronize()
        if torch is not None:
            torch.cuda.synchronize()

    rng = np.random.default_rng(0)
    results = []
    print(f"# {alexnet_ext.cuda_status()['devices'][0]['name']}, batch {args.batch}")
    print(f"{'layer.pass':20} {'ver':>3} {'ms':>8} {'TFLOP/s':>8} {'floor ms':>9} {'of floor':>8} "
          f"{'cuDNN ms':>9} {'torch ms':>9}")
    for name in layers:
        L = S.CONV[name]
        n = args.batch
        kw, s, p, g = L.kwargs, L.stride, L.padding, L.groups
        x = cuda.to_device(rng.standard_normal(L.images(n), dtype=np.float32))
        wt = cuda.to_device(rng.normal(0, 0.01, L.filters()).astype(np.float32))
        y = cuda.empty(L.outputs(n))
        gy = cuda.to_device(rng.standard_normal(L.outputs(n), dtype=np.float32))
        gx, gw = cuda.empty(x.shape), cuda.empty(L.filters())
        prec = {} if args.precision == "fp32" else {"precision": args.precision}
        if args.precision == "bf16":  # operands rounded to bf16 on the GPU; results stay fp32
            x, wt, gy = (ops.cast(a, cuda.bfloat16) for a in (x, wt, gy))
        flops = L.flops(n)
        nbytes = 4.0 * (np.prod(L.images(n)) + np.prod(L.filters()) + np.prod(L.outputs(n)))
        if args.precision == "bf16":  # a floor: every tensor at 2 bytes (our results are fp32)
            nbytes *= 0.5
        floor = max(flops / peak, nbytes / PEAK_BYTES) * 1e3
        calls = {
            "fprop": lambda: ops.filter_acts(x, wt, out=y, **kw, **prec),
            "bprop_data": lambda: ops.img_acts(gy, wt, image_size=L.h, out=gx, **kw, **prec),
            "bprop_filter": lambda: ops.weight_acts(x, gy, filter_size=L.k, out=gw, **kw, **prec),
        }
        tcalls = {}
        if torch is not None:
            F = torch.nn.functional
            tx, tw, tgy = (torch.from_dlpack(a) for a in (x, wt, gy))
            if args.precision == "bf16":  # cuDNN's bf16 path wants channels-last
                tx, tw, tgy = (t.contiguous(memory_format=torch.channels_last) for t in (tx, tw, tgy))
            tcalls = {
                "fprop": lambda: F.conv2d(tx, tw, stride=s, padding=p, groups=g),
                "bprop_data": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tgy, stride=s,
                                                                 padding=p, groups=g),
                "bprop_filter": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tgy, stride=s,
                                                                    padding=p, groups=g),
            }
        for pas in PASSES:
            cudnn = base.get(f"{args.precision}_{name}", {}).get(f"{pas}_ms")
            tms = median_time(tcalls[pas], args.repeat, sync, 10) * 1e3 if pas in tcalls else None
            for v in versions:
                prev = cuda.get_conv_kernel()
                cuda.set_conv_kernel(v)
                try:  # the reference kernels are slow: fewer launches per trial
                    ms = median_time(calls[pas], args.repeat, sync, 1 if v == 1 else 10) * 1e3
                finally:
                    cuda.set_conv_kernel(prev)
                row = dict(layer=name, pass_=pas, version=v, precision=args.precision, ms=ms,
                           tflops=flops / ms / 1e9, floor_ms=floor, cudnn_ms=cudnn, torch_ms=tms)
                results.append(row)
                print(f"{name + '.' + pas:20} {v:>3} {ms:8.3f} {row['tflops']:8.1f} {floor:9.3f} "
                      f"{floor / ms:8.0%} {cudnn if cudnn else float('nan'):9.3f} "
                      f"{tms if tms else float('nan'):9.3f}", flush=True)
    report.write(report.output_path(args.out, "conv_cuda" + ("" if args.precision == "fp32" else "_" + args.precision), "cuda"),
                 {"header": report.header("cuda", "bench/conv_cuda.py", argv), "batch": args.batch,
                  "baseline": str(args.baseline) if base else None, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
