"""Preparation: an image tree -> shard files of preprocessed images (``python -m alexnet_ext.prepare``).

Each image is decoded once (:func:`~alexnet_ext.data.imageio.load_image`: shorter side to
``size``, central ``size x size`` crop, RGB) and stored uint8 ``(3, size, size)`` in shards of
``shard_size`` images (format: :mod:`alexnet_ext.data.shards`), with the per-pixel mean image and
the RGB PCA of the training set. Shards are prepared in parallel processes
(:func:`~alexnet_ext.data.parallel.map_ordered`: workers ignore Ctrl-C, the parent stops them).

Size: ``size`` defaults to the ``[data] image_size`` of ``model`` (default: train's default
model, alexnet-small, 72), so ``prepare SRC OUT`` then ``train --data OUT`` work together;
``--model alexnet`` gives the paper's 256.

Resuming: ``plan.json`` records the settings and, per shard, a digest of its file list; a shard
whose ``<shard>.json`` manifest carries the same digest is complete and is not redone. Rerunning
the same command after an interruption therefore only does the missing shards. Files that cannot
be decoded are skipped, listed in ``report.json`` and counted on stdout; they are never fatal.
So are what the tree walk skips (link loops, non-regular files, names that are not UTF-8; see
:mod:`alexnet_ext.data.folder`), with the reason.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from .. import _validate as V
from . import shards as S
from .errors import DatasetError
from .folder import scan_tree, show_path
from .imageio import load_image
from .parallel import cpu_count, map_ordered, report_progress
from .stats import PixelStats

PLAN = "plan.json"
REPORT = "report.json"
_SHARD_FILE = re.compile(r"^(train|val)-\d{5}(-images\.npy|-labels\.npy|-stats\.npz|\.json)$")
_TEMP_FILE = re.compile(r"\.tmp-\d+$")  # shards.atomic_write_bytes's, left by a killed run
DEFAULT_MODEL = "alexnet-small"  # train's default model (alexnet_ext.train.DEFAULT_MODEL)


def model_image_size(model: str | None = None) -> int:
    """The ``[data] image_size`` of ``model`` (a shipped name or a .toml file; default: train's
    default model). Raises ValueError (ModelError) for an unknown model."""
    from ..nn import load_model

    return int(load_model(DEFAULT_MODEL if model is None else model).data["image_size"])


def _shard_job(job) -> dict:
    """Decode one shard's files and write its files; the manifest goes last."""
    t0 = time.perf_counter()
    out, size, draft = Path(job["out"]), job["size"], job["draft"]
    images = np.empty((len(job["items"]), 3, size, size), np.uint8)
    labels, skipped, n = [], [], 0
    for path, label in job["items"]:
        try:
            images[n] = load_image(path, size, draft=draft)
            labels.append(label)
            n += 1
        except Exception as e:  # noqa: BLE001 - an unreadable file is reported, not fatal
            skipped.append([show_path(path), f"{type(e).__name__}: {e}"])
        report_progress()
    images = images[:n]
    S.save_shard(out, job["split"], job["k"], images, np.array(labels, np.int64))
    if job["split"] == "train":
        stats = PixelStats(3, size, size)
        stats.add(images)
        S.atomic_write_bytes(out / f"{job['name']}-stats.npz", stats.save)
    manifest = {"sha1": job["sha1"], "count": n, "skipped": skipped,
                "seconds": round(time.perf_counter() - t0, 3)}
    S.save_json(out / f"{job['name']}.json", manifest)
    return manifest


def _digest(items, src: Path, size, draft) -> str:
    """Identifies a shard's content: its files (relative to SRC, so that spelling SRC another
    way does not redo everything), labels and decoding settings."""
    h = hashlib.sha1(f"{size}\n{draft}\n".encode())
    for path, label in items:
        h.update(f"{os.path.relpath(path, src)}\t{label}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _read_json(path: Path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _check_out(src: Path, out: Path, plan: dict) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a directory")
    if out.resolve().is_relative_to(src.resolve()):
        raise DatasetError(f"{out}: OUT must not be inside SRC ({src})")
    if not out.exists():
        return
    old = _read_json(out / PLAN)
    if old is None:
        if any(out.iterdir()):
            raise DatasetError(f"{out}: exists, is not empty and holds no preparation (plan.json); "
                               "choose an empty or new directory")
        return
    keys = ("size", "draft", "shard_size", "val_fraction", "class_names")
    diff = [k for k in keys if old.get(k) != plan.get(k)]
    if diff:
        what = ", ".join(f"{k} {old.get(k)!r} -> {plan.get(k)!r}" for k in diff if k != "class_names")
        if "class_names" in diff:
            what = (what + ", " if what else "") + "different classes"
        raise DatasetError(f"{out}: holds a preparation with other settings ({what}); "
                           "use another OUT or delete it")


def prepare(src, out, *, size: int | None = None, val_fraction: float = 0.1,
            workers: int | None = None, shard_size: int = 1024, draft: bool = True,
            progress: bool = True, model: str | None = None) -> dict:
    """Prepare the image tree ``src`` into shards in ``out``; returns the report (also written
    to ``out/report.json``). See the module docstring. ``size`` None: ``model``'s image size.
    Raises :class:`DatasetError` for a bad ``src`` / ``out``."""
    size = model_image_size(model) if size is None else V.integer(size, "size", 1)
    shard_size = V.integer(shard_size, "shard_size", 1)
    workers = cpu_count() if workers is None else V.integer(workers, "workers", 1)
    val_fraction = V.real(val_fraction, "val_fraction", 0.0)
    src, out = Path(src), Path(out)
    t_start = time.perf_counter()
    if not src.exists():
        raise DatasetError(f"{show_path(src)}: no such directory")
    if not src.is_dir():
        raise DatasetError(f"{show_path(src)}: is a file; expected an image tree (train/<class>/<images> "
                           "[+ val/<class>/<images>], or <class>/<images>)")
    scan = scan_tree(src, val_fraction)
    if scan is None:
        raise DatasetError(f"{show_path(src)}: not an image tree: expected train/<class>/<images> [+ "
                           "val/<class>/<images>], or <class>/<images>, and found no class "
                           "folder with image files")
    jobs = []
    for split in ("train", "val"):
        items = scan.splits.get(split, [])
        for k, s in enumerate(range(0, len(items), shard_size)):
            chunk = items[s:s + shard_size]
            jobs.append({"split": split, "k": k, "name": S.shard_name(split, k), "items": chunk,
                         "sha1": _digest(chunk, src, size, draft), "out": str(out), "size": size,
                         "draft": draft})
    plan = {"version": S.VERSION, "src": show_path(src.resolve()), "size": size, "draft": draft,
            "shard_size": shard_size, "val_fraction": val_fraction if scan.layout == "classes" else None,
            "class_names": scan.class_names,
            "shards": [{"name": j["name"], "sha1": j["sha1"], "files": len(j["items"])} for j in jobs]}
    _check_out(src, out, plan)
    out.mkdir(parents=True, exist_ok=True)
    S.save_json(out / PLAN, plan)
    # Files of shards the plan no longer has (the tree shrank): remove them.
    names = {j["name"] for j in jobs}
    for p in out.iterdir():
        m = _SHARD_FILE.match(p.name)
        if m and p.name[:len(m.group(1)) + 6] not in names or _TEMP_FILE.search(p.name):
            p.unlink()

    todo = [j for j in jobs if (_read_json(out / f"{j['name']}.json") or {}).get("sha1") != j["sha1"]
            or (j["split"] == "train" and not (out / f"{j['name']}-stats.npz").is_file())]
    total = sum(len(j["items"]) for j in todo)
    if todo:
        (out / S.INDEX).unlink(missing_ok=True)  # the set is not complete until the end
    _run_jobs(todo, workers, total, progress)

    # Everything is on disk now: merge per-shard results in plan order.
    entries = {"train": [], "val": []}
    skipped = [{"path": p, "error": why} for p, why in scan.skipped]
    stats = PixelStats(3, size, size)
    for j in jobs:
        m = _read_json(out / f"{j['name']}.json")
        skipped += [{"path": p, "error": e} for p, e in m["skipped"]]
        if m["count"]:
            entries[j["split"]].append({"images": f"{j['name']}-images.npy",
                                        "labels": f"{j['name']}-labels.npy", "count": m["count"]})
        if j["split"] == "train":
            stats.merge(PixelStats.load(out / f"{j['name']}-stats.npz"))
    if stats.count == 0:
        raise DatasetError(f"{src}: none of the training images could be decoded "
                           f"({len(skipped)} skipped; see {out / REPORT})")
    splits = {k: v for k, v in entries.items() if v or k == "train"}
    stat_keys = S.save_statistics(out, stats)
    counts = {k: sum(e["count"] for e in v) for k, v in splits.items()}
    seconds = time.perf_counter() - t_start
    report = {"src": show_path(src.resolve()), "out": str(out.resolve()), "size": size, "draft": draft,
              "layout": scan.layout, "classes": len(scan.class_names), "counts": counts,
              "shards": sum(len(v) for v in splits.values()), "shards_prepared_now": len(todo),
              "files_decoded_now": total, "skipped_count": len(skipped),
              "skipped": skipped, "seconds": round(seconds, 3)}
    S.save_json(out / REPORT, report)
    S.write_index(out, scan.class_names, 3, size, splits, stat_keys)
    return report


def _run_jobs(todo, workers, total, progress):
    if not todo:
        return
    if len(todo) == 1 and len(todo[0]["items"]) < 64:
        workers = 1
    for _ in map_ordered(_shard_job, todo, workers=workers, chunksize=1, unit="img",
                         desc="preparing" if progress else None, progress_total=total):
        pass


def main(argv=None) -> int:
    # Ctrl-C anywhere in the command (parsing, the work, the summary) ends it the same way.
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("prepare: interrupted; run the same command again to finish (finished shards "
              "are kept)", file=sys.stderr)
        return 130


def _main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet_ext.prepare",
        description="Decode an image tree once into shard files for training: shorter side to "
                    "SIZE, central SIZExSIZE crop, RGB uint8; plus the training mean image and "
                    "RGB PCA. Resumable: rerun the same command to finish an interrupted run.")
    parser.add_argument("src", metavar="SRC", help="image tree: train/<class>/* [+ val/<class>/*], "
                        "or <class>/* (validation split off by --val-fraction)")
    parser.add_argument("out", metavar="OUT", help="output directory (new, or an earlier run's)")
    parser.add_argument("--size", type=int, default=None,
                        help="stored image side (default: the [data] image_size of --model: 72 "
                             "for alexnet-small, 256 for alexnet)")
    parser.add_argument("--model", default=None, metavar="NAME|FILE",
                        help="the model the shards are for, which sets the default --size "
                             f"(default: train's default model, {DEFAULT_MODEL})")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of each class held out when SRC has no val/ folder (default 0.1)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--shard-size", type=int, default=1024,
                        help="images per shard file (default 1024, ~192 MiB at size 256)")
    parser.add_argument("--no-draft", dest="draft", action="store_false",
                        help="decode JPEGs at full resolution (default: libjpeg draft scaling)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        report = prepare(args.src, args.out, size=args.size, val_fraction=args.val_fraction,
                         workers=args.workers, shard_size=args.shard_size, draft=args.draft,
                         progress=not args.quiet, model=args.model)
    except (DatasetError, ValueError, TypeError) as e:
        print(f"prepare: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. OUT not writable, disk full
        where = f"{show_path(e.filename)}: " if e.filename else ""
        print(f"prepare: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    counts = report["counts"]
    print(f"prepared {counts.get('train', 0)} train / {counts.get('val', 0)} val images of "
          f"{report['classes']} classes at {report['size']}x{report['size']} into "
          f"{report['shards']} shard(s) in {show_path(args.out)} ({report['shards_prepared_now']} prepared "
          f"now, {report['seconds']:.1f} s)")
    if report["skipped_count"]:
        first = report["skipped"][0]
        print(f"skipped {report['skipped_count']} unreadable file(s), e.g. {first['path']} "
              f"({first['error']}); full list in {show_path(Path(args.out) / REPORT)}")
    return 0
