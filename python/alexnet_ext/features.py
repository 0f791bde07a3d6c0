"""``python -m alexnet_ext.features RUN_DIR|CHECKPOINT --out DIR``: nearest neighbours in feature space.

The paper's Figure 4: take the activations of the last hidden layer (fc7 after its ReLU for
``alexnet``; ``--layer`` picks another tensor) for every training image and for a few query
images, and show, for each query, the training images whose feature vectors are closest in
Euclidean distance. Images are the centre crops the net sees in test mode.

Writes ``DIR/neighbors.png`` (one row per query: the query, then its neighbours, nearest first),
``DIR/neighbors.json`` (a list with, per query, its split/index/class and its neighbours'
index, class and distance), and the features themselves: ``DIR/train_features.npy`` (float32,
one row per searched training image) with ``DIR/train_items.txt`` (one line per row: the image's
file path when the data set knows it, else its index in the training split), and
``DIR/query_features.npy`` / ``DIR/query_items.txt`` for the queries.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ._cli import (UsageError, checkpoint_mean, load_run, open_run_data, run_parser,
                   run_cli)
from .nn.checkpoint import atomic_write, atomic_write_text

__all__ = ["main", "extract", "nearest", "item_names"]

PROG = "python -m alexnet_ext.features"


def build_parser() -> argparse.ArgumentParser:
    p = run_parser(PROG, "Nearest training images of query images in the feature space "
                         "of a trained net's last hidden layer (paper Figure 4).",
                   data_help="data set (default: the one the run trained on)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="where neighbors.png, neighbors.json and the features (.npy, with "
                        "the file paths or indices of their rows in .txt) go (created if "
                        "needed)")
    p.add_argument("--queries", type=int, default=8, metavar="N",
                   help="query images, drawn at random from the validation split (default: 8)")
    p.add_argument("--neighbors", type=int, default=6, metavar="K",
                   help="neighbours shown per query (default: 6)")
    p.add_argument("--layer", metavar="NAME",
                   help="tensor whose activations are the features (default: the last hidden "
                        "layer, the input of the classifier; relu7 for alexnet)")
    p.add_argument("--max-train", type=int, metavar="N",
                   help="search only N training images drawn at random (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing queries (default: 0)")
    p.add_argument("--batch-size", type=int, default=100, metavar="N",
                   help="images per forward pass (default: 100)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for decoding an image folder; 0 or 1 decodes in this "
                        "process (default: all cores)")
    return p


def extract(net, split, indices, *, layer, mean, crop, scale, batch_size) -> np.ndarray:
    """Features (n, D) float32 of ``split``'s images ``indices`` (centre crops, test mode)."""
    from .data import center_crop
    from .evaluate import prepare

    out = []
    for s in range(0, len(indices), batch_size):
        idx = indices[s:s + batch_size]
        x = center_crop(prepare(split.images(idx), mean, scale), crop)
        net.forward(x, None, train=False, until=layer)
        out.append(net.output(layer).reshape(len(idx), -1).copy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def item_names(split, indices) -> list[str]:
    """What a row of features is: the image's file path when the split knows its files
    (``split.paths``), else its index in the split."""
    paths = getattr(split, "paths", None)
    if paths is not None and len(paths) == len(split):
        return [str(paths[int(i)]) for i in indices]
    return [str(int(i)) for i in indices]


def nearest(queries: np.ndarray, base: np.ndarray, k: int, exclude=None):
    """Indices (q, k) into ``base`` of the k nearest rows for each query, and their distances.

    ``exclude[i]``: a base index that query i may not match (the query itself), or -1.
    """
    q = queries.astype(np.float64)
    b = base.astype(np.float64)
    d2 = (q * q).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * q @ b.T
    np.maximum(d2, 0.0, out=d2)
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                d2[i, e] = np.inf
    k = min(k, b.shape[0] - (1 if exclude is not None else 0))
    part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < b.shape[0] else \
        np.tile(np.arange(b.shape[0]), (len(q), 1))
    order = np.take_along_axis(d2, part, axis=1).argsort(axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.sqrt(np.take_along_axis(d2, idx, axis=1))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args))


def _run(args) -> int:
    from ._plots import plot_neighbors

    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers: expected 0 or more, got {args.workers}")
    for name in ("queries", "neighbors", "batch_size", "max_train"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive integer, got {v}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    net, ckpt = load_run(args.run)
    spec = net.spec
    layer = args.layer or spec.feature_layer
    if layer not in spec.shapes or layer == spec.cost.name:
        raise UsageError(f"--layer {layer}: not a tensor of model '{spec.name}' (try one of "
                         f"{', '.join(L.name for L in spec.layers[:-1])})")
    _, ds = open_run_data(args.data, ckpt, spec, workers=args.workers)
    names = list(ds.class_names)
    train = ds.split("train")
    qsplit_name = "val" if ds.split("val") is not None and len(ds.split("val")) else "train"
    qsplit = ds.split(qsplit_name)
    rng = np.random.default_rng(args.seed)
    base_idx = np.arange(len(train))
    if args.max_train is not None and args.max_train < len(train):
        base_idx = np.sort(rng.choice(len(train), args.max_train, replace=False))
    nq = min(args.queries, len(qsplit))
    q_idx = rng.choice(len(qsplit), nq, replace=False)
    common = dict(layer=layer, mean=checkpoint_mean(ckpt, ds), crop=spec.data["crop"],
                  scale=spec.data["scale"], batch_size=args.batch_size)
    print(f"features of '{layer}' ({spec.shapes[layer]}) for {len(base_idx)} training images "
          f"and {nq} {qsplit_name} queries")
    base = extract(net, train, base_idx, **common)
    qf = extract(net, qsplit, q_idx, **common)
    exclude = None
    if qsplit_name == "train":
        pos = {int(b): i for i, b in enumerate(base_idx)}
        exclude = [pos.get(int(i), -1) for i in q_idx]
    nb, dist = nearest(qf, base, args.neighbors, exclude)

    labels_t = np.asarray(train.labels)
    labels_q = np.asarray(qsplit.labels)
    records, same = [], 0
    for r, qi in enumerate(q_idx):
        ql = int(labels_q[qi])
        neigh = []
        for j, d in zip(nb[r], dist[r]):
            ti = int(base_idx[j])
            tl = int(labels_t[ti])
            same += tl == ql
            neigh.append({"index": ti, "label": tl, "class": names[tl], "distance": float(d)})
        records.append({"query": {"split": qsplit_name, "index": int(qi), "label": ql,
                                  "class": names[ql]}, "neighbors": neigh})
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "neighbors.json", json.dumps(records, indent=2) + "\n")
        for name, feats, split, idx in (("train", base, train, base_idx),
                                        ("query", qf, qsplit, q_idx)):
            atomic_write(out / f"{name}_features.npy", lambda f, a=feats: np.save(f, a))
            atomic_write_text(out / f"{name}_items.txt", "".join(
                f"{item}\n" for item in item_names(split, idx)))
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write ({e.strerror or e})") from None
    q_imgs = list(qsplit.images(q_idx))
    n_imgs = [list(train.images(np.asarray([n["index"] for n in rec["neighbors"]])))
              for rec in records]
    plot_neighbors(q_imgs, n_imgs, [f"query: {rec['query']['class']}" for rec in records],
                   [[f"{n['class']} ({n['distance']:.3g})" for n in rec["neighbors"]]
                    for rec in records], out / "neighbors.png",
                   title=f"{spec.name}: nearest training images by Euclidean distance of "
                         f"'{layer}' activations")
    total = sum(len(rec["neighbors"]) for rec in records)
    print(f"neighbours of the query's class: {same}/{total} ({100 * same / max(total, 1):.0f}%; "
          f"chance {100 / ds.num_classes:.0f}%)")
    print(f"wrote {out / 'neighbors.png'}, {out / 'neighbors.json'} and the features "
          f"{out / 'train_features.npy'} ({base.shape[0]}x{base.shape[1]}), "
          f"{out / 'query_features.npy'} with their rows' items in *_items.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
