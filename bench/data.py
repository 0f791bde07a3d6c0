"""Data pipeline benchmark: BatchLoader throughput and JPEG decode rate.

1. Loader: a temporary shard set of random 256x256 RGB images; the images/s of 224x224
   training batches (random crop, flip, PCA lighting, mean subtraction) delivered to a consumer
   that does nothing else, for workers = 0 (in-process), 1, 2 and all cores. Worker start-up is
   excluded (timing starts after the first batch). Both loader modes: float32 (finished batches)
   and uint8 (crops and flips only, the rest runs on the GPU: ``ops.normalize_batch``).
2. Decode: ``load_image`` (decode + shorter side to 256 + central crop) per core, for JPEGs of
   ILSVRC-typical size (500x375) and large photos (2000x1500), with and without JPEG draft mode.

    python bench/data.py [--images 2000] [--out results.json]

Sizes default to the paper's (alexnet_ext._shapes): batch 128, 224x224 crops of 256x256 images.

``run(args)`` returns a dict for JSON (``bench/run.py --data``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder's modules, from any cwd
import report  # noqa: E402  bench/report.py
from alexnet_ext import _shapes as S  # noqa: E402
from alexnet_ext.data import BatchLoader, open_dataset, write_shards  # noqa: E402
from alexnet_ext.data.imageio import load_image  # noqa: E402
from alexnet_ext.data.parallel import cpu_count  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data benchmark")
    g.add_argument("--images", type=int, default=2000, help="images in the temporary shard set")
    g.add_argument("--batch-size", type=int, default=S.BATCH)
    g.add_argument("--crop", type=int, default=S.INPUT[1])
    g.add_argument("--size", type=int, default=S.STORED, help="stored image side")
    g.add_argument("--loader-seconds", type=float, default=8.0,
                   help="measure each worker count for about this long (at least one epoch)")
    g.add_argument("--jpegs", type=int, default=24, help="JPEG files per size for the decode test")
    g.add_argument("--workers", type=int, nargs="*", default=None,
                   help="worker counts to try (default: 0, 1, 2, all cores)")
    g.add_argument("--dtypes", nargs="*", default=["float32", "uint8"],
                   help="loader modes: float32 (finished batches) and/or uint8 (crops and flips "
                        "only; the rest is ops.normalize_batch on the GPU)")
    g.add_argument("--no-decode", action="store_true", help="skip the JPEG decode test")


def _photo(rng, w, h):
    """Photo-like content: smooth colour fields plus fine noise (JPEG sizes like real photos)."""
    small = rng.integers(0, 256, (max(2, h // 24), max(2, w // 24), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.int16)
    img = img + rng.integers(-12, 13, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def bench_decode(count: int, size: int, tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for w, h in ((500, 375), (2000, 1500)):
        paths = []
        for i in range(count):
            p = tmp / f"{w}x{h}-{i}.jpg"
            _photo(rng, w, h).save(p, quality=90)
            paths.append(p)
        row = {}
        for draft in (False, True):
            load_image(paths[0], size, draft=draft)  # warm up
            # CPU time of this process: the per-core rate, even when other jobs share the cores.
            t0 = time.process_time()
            imgs = [load_image(p, size, draft=draft) for p in paths]
            dt = time.process_time() - t0
            row["draft" if draft else "full"] = {"images_per_s": count / dt, "ms_per_image": 1e3 * dt / count}
            row["_imgs_draft" if draft else "_imgs_full"] = imgs
        diff = np.mean([np.abs(a.astype(int) - b.astype(int)).mean()
                        for a, b in zip(row.pop("_imgs_full"), row.pop("_imgs_draft"))])
        row["speedup"] = row["draft"]["images_per_s"] / row["full"]["images_per_s"]
        row["mean_abs_diff"] = float(diff)
        row["file_kb"] = float(np.mean([p.stat().st_size for p in paths]) / 1024)
        out[f"{w}x{h}"] = row
    return out


def bench_loader(args, tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    n, s = args.images, args.size
    t0 = time.perf_counter()
    images = rng.integers(0, 256, (n, 3, s, s), dtype=np.uint8)
    write_shards(tmp / "shards", [str(i) for i in range(10)], (images, rng.integers(0, 10, n)))
    del images
    setup = time.perf_counter() - t0
    ds = open_dataset(tmp / "shards")
    split = ds.split("train")
    counts = args.workers if args.workers is not None else sorted({0, 1, 2, cpu_count()})
    out = {"images": n, "stored": f"3x{s}x{s}", "crop": args.crop, "batch_size": args.batch_size,
           "setup_s": setup}
    for dtype in args.dtypes:
        rows = {}
        for w in counts:
            rows[w] = _loader_rate(args, ds, split, w, dtype)
        out["by_workers" if dtype == "float32" else f"{dtype}_by_workers"] = rows
    return out


def _loader_rate(args, ds, split, w: int, dtype: str) -> dict:
    loader = BatchLoader(split, batch_size=args.batch_size, crop=args.crop, mean=ds.mean,
                         pca=ds.pca, workers=w, seed=1, dtype=dtype)
    t_start = time.perf_counter()
    it = loader.epoch(0)
    next(it)
    first = time.perf_counter() - t_start
    delivered, t0, c0, epoch = 0, time.perf_counter(), time.process_time(), 0
    while True:
        for batch in it:
            delivered += len(batch[0])
        epoch += 1
        if time.perf_counter() - t0 >= args.loader_seconds:
            break
        it = loader.epoch(epoch)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    loader.close()
    row = {"images_per_s": delivered / dt, "batches": delivered // args.batch_size,
           "first_batch_s": first}
    if w == 0:  # all work in this process: its CPU time gives the rate of one core
        row["images_per_cpu_s"] = delivered / cpu
    return row


def run(args=None) -> dict:
    if args is None or not hasattr(args, "images"):
        p = argparse.ArgumentParser()
        add_arguments(p)
        defaults = p.parse_args([])
        if args is not None:
            vars(defaults).update({k: v for k, v in vars(args).items() if k in vars(defaults)})
        args = defaults
    with tempfile.TemporaryDirectory(prefix="alexnet_ext-bench-") as tmp:
        tmp = Path(tmp)
        loader = bench_loader(args, tmp)
        decode = {} if args.no_decode else bench_decode(args.jpegs, args.size, tmp)
    result = {"cpu_count": cpu_count(), "loader": loader, "jpeg_decode_per_core": decode}
    _print(result)
    return result


def _print(r: dict) -> None:
    lo = r["loader"]
    print(f"BatchLoader: {lo['images']} random {lo['stored']} images in shards, "
          f"{lo['crop']}x{lo['crop']} training crops, batch {lo['batch_size']}, {r['cpu_count']} cores")
    for key in [k for k in lo if k.endswith("by_workers")]:
        rows = lo[key]
        mode = "float32" if key == "by_workers" else key[:-len("_by_workers")]
        print(f"  {mode} batches:")
        print(f"  {'workers':>14} {'images/s':>10} {'first batch s':>14}")
        for w, row in rows.items():
            label = f"{w}" + (" (in-process)" if w == 0 else "")
            print(f"  {label:>14} {row['images_per_s']:>10.0f} {row['first_batch_s']:>14.2f}")
        if 0 in rows:
            print(f"  one core (in-process, per CPU-second): {rows[0]['images_per_cpu_s']:.0f} images/s")
    if not r["jpeg_decode_per_core"]:
        return
    print("JPEG decode + resize to 256 (load_image), images per CPU-second of one core:")
    print(f"  {'source':>10} {'KB':>6} {'full img/s':>11} {'draft img/s':>12} {'speedup':>8} {'mean |diff|':>12}")
    for size, row in r["jpeg_decode_per_core"].items():
        print(f"  {size:>10} {row['file_kb']:>6.0f} {row['full']['images_per_s']:>11.0f} "
              f"{row['draft']['images_per_s']:>12.0f} {row['speedup']:>8.2f} {row['mean_abs_diff']:>12.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--out", help="write the results (JSON) here (default: ./bench_data-<date>-cpu.json)")
    args = p.parse_args(argv)
    result = run(args)
    report.write(report.output_path(args.out, "bench_data", "cpu"),
                 {"header": report.header("cpu", "bench/data.py", argv), "results": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
