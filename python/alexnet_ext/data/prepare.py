"""Preparation: an image tree -> shard files of preprocessed images (``python -m alexnet_ext.prepare``).

Each image is decoded once (:func:`~alexnet_ext.data.imageio.load_image`: shorter side to
``size``, central ``size x size`` crop, RGB) and stored uint8 ``(3, size, size)`` in shards of
``shard_size`` images (format: :mod:`alexnet_ext.data.shards`), with the per-pixel mean image and
the RGB PCA of the training set. Shards are prepared in parallel processes.

Resuming: ``plan.json`` records the settings and, per shard, a digest of its file list; a shard
whose ``<shard>.json`` manifest carries the same digest is complete and is not redone. Rerunning
the same command after an interruption therefore only does the missing shards. Files that cannot
be decoded are skipped, listed in ``report.json`` and counted on stdout; they are never fatal.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import _validate as V
from . import shards as S
from .errors import DatasetError
from .folder import scan_tree
from .imageio import load_image
from .parallel import cpu_count
from .stats import PixelStats

PLAN = "plan.json"
REPORT = "report.json"
_SHARD_FILE = re.compile(r"^(train|val)-\d{5}(-images\.npy|-labels\.npy|-stats\.npz|\.json)$")

_progress = None  # per process: a shared counter of decoded images


def _init_worker(counter):
    global _progress
    _progress = counter


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
            skipped.append([path, f"{type(e).__name__}: {e}"])
        if _progress is not None:
            with _progress.get_lock():
                _progress.value += 1
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
        h.update(f"{os.path.relpath(path, src)}\t{label}\n".encode())
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


def prepare(src, out, *, size: int = 256, val_fraction: float = 0.1, workers: int | None = None,
            shard_size: int = 1024, draft: bool = True, progress: bool = True) -> dict:
    """Prepare the image tree ``src`` into shards in ``out``; returns the report (also written
    to ``out/report.json``). See the module docstring. Raises :class:`DatasetError` for a bad
    ``src`` / ``out``."""
    size = V.integer(size, "size", 1)
    shard_size = V.integer(shard_size, "shard_size", 1)
    workers = cpu_count() if workers is None else V.integer(workers, "workers", 1)
    val_fraction = V.real(val_fraction, "val_fraction", 0.0)
    src, out = Path(src), Path(out)
    t_start = time.perf_counter()
    if not src.exists():
        raise DatasetError(f"{src}: no such directory")
    if not src.is_dir():
        raise DatasetError(f"{src}: is a file; expected an image tree (train/<class>/<images> "
                           "[+ val/<class>/<images>], or <class>/<images>)")
    scan = scan_tree(src, val_fraction)
    if scan is None:
        raise DatasetError(f"{src}: not an image tree: expected train/<class>/<images> [+ "
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
    plan = {"version": S.VERSION, "src": str(src.resolve()), "size": size, "draft": draft,
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
        if m and p.name[:len(m.group(1)) + 6] not in names:
            p.unlink()

    todo = [j for j in jobs if (_read_json(out / f"{j['name']}.json") or {}).get("sha1") != j["sha1"]
            or (j["split"] == "train" and not (out / f"{j['name']}-stats.npz").is_file())]
    total = sum(len(j["items"]) for j in todo)
    if todo:
        (out / S.INDEX).unlink(missing_ok=True)  # the set is not complete until the end
    _run_jobs(todo, workers, total, progress)

    # Everything is on disk now: merge per-shard results in plan order.
    entries, skipped = {"train": [], "val": []}, []
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
    report = {"src": str(src.resolve()), "out": str(out.resolve()), "size": size, "draft": draft,
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
    bar = tqdm(total=total, unit="img", desc="preparing",
               disable=True if not progress else None)  # None: off when not a terminal
    try:
        if workers == 1 or len(todo) == 1 and len(todo[0]["items"]) < 64:
            for j in todo:
                _shard_job(j)
                bar.update(len(j["items"]))
            return
        ctx = mp.get_context("spawn")
        counter = ctx.Value("q", 0)
        with ctx.Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(counter,)) as pool:
            results = pool.imap_unordered(_shard_job, todo)
            done = 0
            while done < len(todo):
                try:
                    results.next(timeout=0.25)
                    done += 1
                except mp.TimeoutError:
                    pass
                bar.n = counter.value
                bar.refresh()
    finally:
        bar.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet_ext.prepare",
        description="Decode an image tree once into shard files for training: shorter side to "
                    "SIZE, central SIZExSIZE crop, RGB uint8; plus the training mean image and "
                    "RGB PCA. Resumable: rerun the same command to finish an interrupted run.")
    parser.add_argument("src", metavar="SRC", help="image tree: train/<class>/* [+ val/<class>/*], "
                        "or <class>/* (validation split off by --val-fraction)")
    parser.add_argument("out", metavar="OUT", help="output directory (new, or an earlier run's)")
    parser.add_argument("--size", type=int, default=256, help="stored image side (default 256)")
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
                         progress=not args.quiet)
    except (DatasetError, ValueError, TypeError) as e:
        print(f"prepare: error: {e}", file=sys.stderr)
        return 2
    counts = report["counts"]
    print(f"prepared {counts.get('train', 0)} train / {counts.get('val', 0)} val images of "
          f"{report['classes']} classes at {report['size']}x{report['size']} into "
          f"{report['shards']} shard(s) in {args.out} ({report['shards_prepared_now']} prepared "
          f"now, {report['seconds']:.1f} s)")
    if report["skipped_count"]:
        first = report["skipped"][0]
        print(f"skipped {report['skipped_count']} unreadable file(s), e.g. {first['path']} "
              f"({first['error']}); full list in {Path(args.out) / REPORT}")
    return 0
