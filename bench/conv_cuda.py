#!/usr/bin/env python
"""GPU convolution benchmark: the three passes of every AlexNet conv layer at batch 128, for both
kernel versions, next to the time floors and the cuDNN baseline (docs/CUDA_CONV.md).

    python bench/conv_cuda.py                       # fast kernels (version 2)
    python bench/conv_cuda.py --versions 1,2        # also the reference kernels
    python bench/conv_cuda.py --layers conv2 --repeat 50 --torch

Times: mean over --repeat back-to-back launches between two synchronisations, after a warm-up
(each layer's ms are long against launch overhead). --torch also times PyTorch's fp32 conv
(cuDNN, TF32 off) in this process. Nothing is asserted; --json writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import alexnet_ext
from alexnet_ext import cuda, ops

BASELINE = Path("/work/shared/baselines/h100-pytorch-2026-11-22.json")
PEAK_FLOPS, PEAK_BYTES = 51.3e12, 3.0e12  # H100 SXM fp32 SIMT (measured), HBM3 copy rate

# images (N omitted), filters, stride, padding, groups
LAYERS = {
    "conv1": ((3, 224, 224), (96, 3, 11, 11), 4, 2, 1),
    "conv2": ((96, 27, 27), (256, 48, 5, 5), 1, 2, 2),
    "conv3": ((256, 13, 13), (384, 256, 3, 3), 1, 1, 1),
    "conv4": ((384, 13, 13), (384, 192, 3, 3), 1, 1, 2),
    "conv5": ((384, 13, 13), (256, 192, 3, 3), 1, 1, 2),
}
BASE_KEYS = {"fprop": "fprop_ms", "dgrad": "bprop_data_ms", "wgrad": "bprop_filter_ms"}


def timed(fn, repeat):
    fn()
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    cuda.synchronize()
    return (time.perf_counter() - t0) / repeat * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--versions", default="2", help="comma-separated kernel versions (1, 2)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--torch", action="store_true", help="also time PyTorch (cuDNN fp32)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if not alexnet_ext.cuda_available():
        sys.exit(f"no usable GPU: {alexnet_ext.cuda_status()['reason']}")
    base = json.loads(BASELINE.read_text())["per_layer"] if BASELINE.exists() else {}
    torch = None
    if args.torch:
        import torch  # noqa: F811
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    results = []
    print(f"# {alexnet_ext.cuda_status()['devices'][0]['name']}, batch {args.batch}")
    print(f"{'layer.pass':14} {'ver':>3} {'ms':>8} {'TFLOP/s':>8} {'floor ms':>9} {'of floor':>8} "
          f"{'cuDNN ms':>9} {'torch ms':>9}")
    for name in args.layers.split(","):
        (c, h, w), fs, s, p, g = LAYERS[name]
        n = args.batch
        kw = dict(stride=s, padding=p, groups=g)
        x = cuda.to_device(rng.standard_normal((n, c, h, w), dtype=np.float32))
        wt = cuda.to_device(rng.normal(0, 0.01, fs).astype(np.float32))
        y = ops.filter_acts(x, wt, **kw)
        gy = cuda.to_device(rng.standard_normal(y.shape, dtype=np.float32))
        gx, gw = cuda.empty(x.shape), cuda.empty(fs)
        flops = 2.0 * np.prod(y.shape) * np.prod(fs[1:])
        nbytes = 4.0 * (np.prod(x.shape) + np.prod(fs) + np.prod(y.shape))
        floor = max(flops / PEAK_FLOPS, nbytes / PEAK_BYTES) * 1e3
        calls = {
            "fprop": lambda: ops.filter_acts(x, wt, out=y, **kw),
            "dgrad": lambda: ops.img_acts(gy, wt, image_size=(h, w), out=gx, **kw),
            "wgrad": lambda: ops.weight_acts(x, gy, filter_size=fs[2:], out=gw, **kw),
        }
        tcalls = {}
        if torch is not None:
            F = torch.nn.functional
            tx, tw, tgy = (torch.from_dlpack(a) for a in (x, wt, gy))
            tcalls = {
                "fprop": lambda: F.conv2d(tx, tw, stride=s, padding=p, groups=g),
                "dgrad": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tgy, stride=s, padding=p, groups=g),
                "wgrad": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tgy, stride=s, padding=p, groups=g),
            }
        for pas, fn in calls.items():
            cudnn = base.get(f"fp32_{name}", {}).get(BASE_KEYS[pas]) if args.batch == 128 else None
            tms = timed(tcalls[pas], args.repeat) if pas in tcalls else None
            for v in (int(t) for t in args.versions.split(",")):
                prev = cuda.get_conv_kernel()
                cuda.set_conv_kernel(v)
                try:
                    ms = timed(fn, args.repeat if v == 2 else max(2, args.repeat // 10))
                finally:
                    cuda.set_conv_kernel(prev)
                row = dict(layer=name, pass_=pas, version=v, ms=ms, tflops=flops / ms / 1e9,
                           floor_ms=floor, cudnn_fp32_ms=cudnn, torch_ms=tms)
                results.append(row)
                print(f"{name + '.' + pas:14} {v:>3} {ms:8.3f} {row['tflops']:8.1f} {floor:9.3f} "
                      f"{floor / ms:8.0%} {cudnn if cudnn else float('nan'):9.3f} "
                      f"{tms if tms else float('nan'):9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
