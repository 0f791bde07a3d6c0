"""``python -m alexnet_ext.evaluate RUN_DIR|CHECKPOINT``: top-1 / top-5 error of a trained net.

``--views 1``: the centre crop of each image. ``--views 10``: the paper's test procedure, the
softmax averaged over ten views (four corner patches, the centre patch and their horizontal
reflections; :func:`alexnet_ext.data.ten_view_crops`); the centre-crop numbers are printed too.
Images are prepared as in training: the training set's mean image (stored in the checkpoint) is
subtracted before cropping, then the model's ``[data] scale`` is applied.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import ops
from ._cli import (UsageError, checkpoint_mean, load_run, open_run_data, run_parser,
                   output_file, run_cli)
from .nn.checkpoint import atomic_write_text
from .nn.device import to_host

__all__ = ["main", "evaluate_views", "prepare"]

PROG = "python -m alexnet_ext.evaluate"


def build_parser() -> argparse.ArgumentParser:
    p = run_parser(PROG, "Top-1 and top-5 error of a trained network (a run directory of "
                         "python -m alexnet_ext.train, or its checkpoint file).",
                   data_help="data set to evaluate on (default: the one the run trained on)")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="which split to evaluate (default: val)")
    p.add_argument("--views", type=int, choices=(1, 10), default=1,
                   help="1: centre crop; 10: average the softmax over the paper's ten views "
                        "(default: 1)")
    p.add_argument("--batch-size", type=int, default=100, metavar="N",
                   help="images per forward pass (default: 100)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for decoding images and loading batches; 0 works in this "
                        "process (default: half the cores for loading, all for decoding)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    return p


def prepare(images_u8: np.ndarray, mean: np.ndarray, scale: float) -> np.ndarray:
    """``(images - mean) * scale`` as float32, the arithmetic of the training loader."""
    x = np.subtract(images_u8, mean[None], dtype=np.float32)
    if scale != 1.0:
        x *= np.float32(scale)
    return x


def evaluate_views(net, split, *, mean, crop, scale, batch_size, progress=True) -> dict:
    """Centre-crop and ten-view errors over a whole split (labels from the split)."""
    from tqdm import tqdm

    from .data import ten_view_crops

    k5 = min(5, net.spec.classes)
    n = len(split)
    labels = np.asarray(split.labels, dtype=np.int64)
    err = {"centre_top1": 0, "centre_top5": 0, "ten_top1": 0, "ten_top5": 0}
    loss = 0.0
    for start in tqdm(range(0, n, batch_size), desc="10 views", unit="batch", leave=False,
                      disable=None if progress else True):
        idx = np.arange(start, min(n, start + batch_size))
        y = np.ascontiguousarray(labels[idx])
        views = ten_view_crops(prepare(split.images(idx), mean, scale), crop)
        avg = np.zeros((len(idx), net.spec.classes), np.float64)
        for v in range(10):
            batch_loss = net.forward(np.ascontiguousarray(views[v]), y, train=False)
            avg += to_host(net.probs)
            if v == 4:                                    # the centre view
                loss += batch_loss * len(idx)
                e1, e5 = ops.top_k_errors(net.probs, net.labels, ks=(1, k5))
                err["centre_top1"] += e1
                err["centre_top5"] += e5
        e1, e5 = ops.top_k_errors((avg / 10).astype(np.float32), y, ks=(1, k5))
        err["ten_top1"] += e1
        err["ten_top5"] += e5
    out = {k: v / n for k, v in err.items()}
    out["centre_loss"] = loss / n
    out["images"] = n
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args))


def _run(args) -> int:
    from .data import BatchLoader
    from .trainer import evaluate_loader

    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers: expected 0 or more, got {args.workers}")
    json_path = output_file(args.json, "--json") if args.json else None
    net, ckpt = load_run(args.run)
    spec = net.spec
    data, ds = open_run_data(args.data, ckpt, spec, need_train=False, workers=args.workers)
    names = ckpt.info.get("class_names")
    if names is not None and list(ds.class_names) != list(names):
        raise UsageError(f"--data {data}: its {ds.num_classes} classes are not the "
                         f"{len(names)} classes the net was trained on")
    split = ds.split(args.split)
    if split is None or len(split) == 0:
        raise UsageError(f"--data {data}: no '{args.split}' split")
    mean = checkpoint_mean(ckpt, ds)
    crop, scale = spec.data["crop"], spec.data["scale"]
    st = ckpt.state
    print(f"checkpoint {ckpt.path}: {spec.name}, epoch {st.get('epoch')}, step {st.get('step')}")
    print(f"data {data}: split '{args.split}', {len(split)} images, {ds.num_classes} classes")
    t0 = time.perf_counter()
    if args.views == 1:
        loader = BatchLoader(split, batch_size=args.batch_size, crop=crop, mean=mean,
                             train=False, flip=False, lighting=0.0, scale=scale,
                             workers=args.workers)
        try:
            r = evaluate_loader(net, loader, progress=True, desc="centre crop")
        finally:
            loader.close()
        res = {"centre_top1": r["top1"], "centre_top5": r["top5"], "centre_loss": r["loss"],
               "images": r["images"]}
    else:
        res = evaluate_views(net, split, mean=mean, crop=crop, scale=scale,
                             batch_size=args.batch_size)
    res["seconds"] = time.perf_counter() - t0
    # With 5 classes or fewer every label is in the top 5: that error is 0 and not shown.
    top5 = spec.classes > 5
    print(f"centre crop: top-1 error {100 * res['centre_top1']:.2f}%"
          + (f"  top-5 error {100 * res['centre_top5']:.2f}%" if top5 else "")
          + f"  loss {res['centre_loss']:.4f}")
    if args.views == 10:
        print(f"10 views:    top-1 error {100 * res['ten_top1']:.2f}%"
              + (f"  top-5 error {100 * res['ten_top5']:.2f}%" if top5 else ""))
    print(f"({res['images']} images, {res['seconds']:.1f} s; chance: top-1 "
          f"{100 * (1 - 1 / spec.classes):.0f}%)")
    if json_path is not None:
        res.update(checkpoint=str(ckpt.path), data=str(data), split=args.split, views=args.views)
        try:
            atomic_write_text(json_path, json.dumps(res, indent=2) + "\n")
        except OSError as e:
            raise UsageError(f"--json {json_path}: cannot write ({e.strerror or e})") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
