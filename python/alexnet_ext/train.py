"""``python -m alexnet_ext.train``: train a model with the paper's SGD.

With no arguments: the ``alexnet-small`` model on a generated data set of small images
(:func:`alexnet_ext.data.synthetic.default_dataset`), on the GPU when one is usable, else on the
CPU for a few minutes.

The loop (:class:`Trainer`) is the paper's: mini-batches of 128 with random crops, flips and PCA
lighting (:class:`alexnet_ext.data.BatchLoader`), momentum 0.9, weight decay 5e-4 as in
``v <- 0.9 v - 0.0005 lr w - lr dL/dw; w <- w + v``, learning rate 0.01 divided by 10 whenever
the validation error stops improving (at most 3 times), or at fixed epochs.

A run directory (``--out``, default ``runs/<model>-<timestamp>``) receives:

* ``metrics.jsonl`` -- one JSON line per epoch (epoch, lr, train loss / top-1, validation loss /
  top-1 / top-5, images per second, seconds, fraction of time spent waiting for data);
* ``checkpoint.safetensors`` (+ ``checkpoint.json``) -- parameters, velocities, the mean image and
  the loop's state, written atomically after every epoch and on Ctrl-C;
* ``curves.png``, ``conv1_filters.png`` -- learning curves and the first layer's kernels, one
  band per column (the paper's Figure 3);
* ``config.json``, ``model.toml``, ``train.log``.

``--resume RUN_DIR`` continues a run; with the same seed it reproduces the numbers of an
uninterrupted run (data order, crops and dropout masks derive from the seed, epoch, step, layer).
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import ops
from ._cli import UsageError, open_data, run_cli
from .nn import (ModelError, Net, format_summary, load_checkpoint, load_model, parse_model,
                 save_checkpoint)
from .nn import device as D
from .nn.checkpoint import CHECKPOINT_NAME, atomic_write_text

__all__ = ["main", "build_parser", "Trainer", "ArrayLoader", "evaluate_loader"]

PROG = "python -m alexnet_ext.train"
DEFAULT_MODEL = "alexnet-small"


# ---------------------------------------------------------------------------------------------
# Loop

class ArrayLoader:
    """Batches from in-memory arrays, with the interface of :class:`alexnet_ext.data.BatchLoader`.

    ``x`` float32 (N, C, H, W) already preprocessed, ``y`` int (N,). Training order is a
    permutation drawn from (seed, epoch); the last partial batch is dropped when ``train``.
    """

    def __init__(self, x, y, *, batch_size: int, train: bool = True, seed: int = 0):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.wait_seconds = 0.0

    def __len__(self):
        n, b = len(self.y), self.batch_size
        return n // b if self.train else -(-n // b)

    def epoch(self, epoch: int, start_batch: int = 0):
        n = len(self.y)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.train
                 else np.arange(n))
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield np.ascontiguousarray(self.x[idx]), self.y[idx]

    def close(self):
        pass


def evaluate_loader(net: Net, loader, *, progress: bool = False, desc: str = "val") -> dict:
    """Mean loss and top-1 / top-5 error of ``net`` (test mode) over one pass of ``loader``."""
    from tqdm import tqdm

    k5 = min(5, net.spec.classes)
    loss = err1 = err5 = 0.0
    n = 0
    feed = on_device(net, loader)
    batches = loader.epoch(0) if feed is None else feed(loader.epoch(0))
    try:
        for x, y in tqdm(batches, total=len(loader), desc=desc, leave=False,
                         disable=None if progress else True, unit="batch"):
            batch_loss = net.forward(x, y, train=False)
            e1, e5 = ops.top_k_errors(net.probs, net.labels, ks=(1, k5))
            loss += batch_loss * len(y)
            err1 += e1
            err5 += e5
            n += len(y)
    finally:
        if feed is not None:
            feed.close()
    return {"loss": loss / n, "top1": err1 / n, "top5": err5 / n, "images": n}


def on_device(net: Net, loader):
    """A :class:`~alexnet_ext.data.device_feed.DeviceFeed` to the GPU of ``net``'s input, or None
    for a CPU net. Loaders with workers hand out a fixed set of shared-memory slots: those are
    pinned (close the feed before the loader)."""
    gpu = D.gpu_index(net.data.device)
    if gpu is None:
        return None
    from .data.device_feed import DeviceFeed
    return DeviceFeed(gpu, pin=getattr(loader, "workers", 0) > 0)


class Trainer:
    """The training loop over a built :class:`~alexnet_ext.nn.Net`.

    Args:
        net: the network (initialised, or loaded from a checkpoint).
        learning: the model's ``[learning]`` settings (lr, momentum, weight_decay, bias_decay,
            epochs, schedule, patience, max_reductions, lr_factor, min_improvement, steps).
        train_loader, val_loader: BatchLoader-like (``len``, ``epoch(e, start_batch)``,
            ``wait_seconds``); ``val_loader`` may be None (the schedule then watches train loss).
        run_dir: where metrics, checkpoints and pictures go (None: nowhere).
        seed: dropout seeds derive from (seed, step, layer).
        state: the loop state of a checkpoint to continue from.
        extra, info: saved into every checkpoint (the mean image; class names, data path ...).
        log: a function taking one line of text.
        progress: show a tqdm bar per epoch (on a terminal).
        on_step: called as ``on_step(trainer)`` after every step (tests use it to stop a run).
    """

    def __init__(self, net: Net, learning: dict, train_loader, val_loader=None, *,
                 run_dir=None, seed: int = 0, state: dict | None = None, extra=None,
                 info=None, log=print, progress: bool = True, on_step=None,
                 plot_every: float = 10.0):
        self.net, self.cfg = net, dict(learning)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed = seed
        self.extra, self.info = extra or {}, info or {}
        self.log, self.progress, self.on_step = log, progress, on_step
        self.plot_every = plot_every
        self.state = state or {
            "epoch": 0, "batch": 0, "step": 0, "lr": self.cfg["lr"], "seed": seed,
            "schedule": {"best": None, "bad_epochs": 0, "reductions": 0},
            "partial": _fresh_partial(), "status": "running",
        }
        self.history = self._read_history()
        self._stop = False
        self._last_plot = 0.0
        self._feed = on_device(net, train_loader)

    def close(self) -> None:
        """Release what the loop holds on the GPU side (pinned loader slots); before the loaders
        are closed."""
        if self._feed is not None:
            self._feed.close()
            self._feed = None

    # ---- control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and return (what Ctrl-C does)."""
        self._stop = True

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_NAME if self.run_dir else None

    # ---- the loop -----------------------------------------------------------------------------

    def train(self) -> str:
        """Run until the configured epoch count. Returns "finished", "interrupted" or "diverged"."""
        from tqdm import tqdm

        st, cfg, net = self.state, self.cfg, self.net
        epochs = cfg["epochs"]
        k1 = (1,)
        while st["epoch"] < epochs:
            e = st["epoch"]
            part = st["partial"]
            loader = self.train_loader
            wait0 = loader.wait_seconds
            t0 = time.perf_counter()
            bar = tqdm(total=len(loader), initial=st["batch"], desc=f"epoch {e + 1}/{epochs}",
                       unit="batch", leave=False, dynamic_ncols=True,
                       disable=None if self.progress else True)
            try:
                batches = loader.epoch(e, start_batch=st["batch"])
                for x, y in batches if self._feed is None else self._feed(batches):
                    # The whole step is queued before anything is read back: on a GPU the host
                    # waits once per step, at its end (the loss and the error count).
                    loss = net.forward(x, y, train=True, step=st["step"], seed=self.seed,
                                       wait=False)
                    net.backward()
                    net.update(lr=st["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"], bias_decay=cfg["bias_decay"])
                    loss = float(loss)
                    if not math.isfinite(loss):
                        bar.close()
                        return self._diverged(loss)
                    err = ops.top_k_errors(net.probs, net.labels, ks=k1)[0]
                    n = len(y)
                    st["step"] += 1
                    st["batch"] += 1
                    part["loss"] += loss * n
                    part["errors"] += err
                    part["images"] += n
                    bar.update(1)
                    if st["batch"] % 5 == 1 or st["batch"] == len(loader):
                        secs = part["seconds"] + time.perf_counter() - t0
                        wait = part["wait"] + loader.wait_seconds - wait0
                        bar.set_postfix(loss=f"{part['loss'] / part['images']:.3f}",
                                        err=f"{100 * part['errors'] / part['images']:.1f}%",
                                        ips=f"{part['images'] / max(secs, 1e-9):.0f}",
                                        wait=f"{100 * wait / max(secs, 1e-9):.0f}%",
                                        refresh=False)
                    if self.on_step is not None:
                        self.on_step(self)
                    if self._stop and st["batch"] < len(loader):
                        part["seconds"] += time.perf_counter() - t0
                        part["wait"] += loader.wait_seconds - wait0
                        bar.close()
                        return self._interrupted()
            finally:
                bar.close()
            part["seconds"] += time.perf_counter() - t0
            part["wait"] += loader.wait_seconds - wait0
            if part["images"] == 0:
                raise RuntimeError("the training loader yielded no batches")
            self._end_epoch()
            if self._stop and st["epoch"] < epochs:
                return self._interrupted()
        st["status"] = "finished"
        self._save()
        self._plots(force=True)
        return "finished"

    def _end_epoch(self) -> None:
        st, part = self.state, self.state["partial"]
        e = st["epoch"] + 1
        rec = {"epoch": e, "step": st["step"], "lr": st["lr"],
               "train_loss": part["loss"] / part["images"],
               "train_top1": part["errors"] / part["images"],
               "val_loss": None, "val_top1": None, "val_top5": None}
        t0 = time.perf_counter()
        if self.val_loader is not None:
            v = evaluate_loader(self.net, self.val_loader, progress=self.progress)
            rec.update(val_loss=v["loss"], val_top1=v["top1"], val_top5=v["top5"])
        val_seconds = time.perf_counter() - t0
        rec["img_per_s"] = part["images"] / max(part["seconds"], 1e-9)
        rec["seconds"] = part["seconds"] + val_seconds
        rec["data_wait"] = part["wait"] / max(part["seconds"], 1e-9)
        self.history.append(rec)
        self._append_metrics(rec)
        msg = (f"epoch {e:3d}  lr {st['lr']:.2g}  train loss {rec['train_loss']:.4f} "
               f"top-1 {100 * rec['train_top1']:5.1f}%")
        if rec["val_top1"] is not None:
            msg += (f"  val loss {rec['val_loss']:.4f} top-1 {100 * rec['val_top1']:5.1f}% "
                    f"top-5 {100 * rec['val_top5']:5.1f}%")
        msg += (f"  {rec['img_per_s']:.0f} img/s  {rec['seconds']:.1f}s"
                f"  data wait {100 * rec['data_wait']:.0f}%")
        self.log(msg)
        st["epoch"] = e
        st["batch"] = 0
        st["partial"] = _fresh_partial()
        self._schedule(rec)
        self._save()
        self._plots(force=st["epoch"] >= self.cfg["epochs"])

    def _schedule(self, rec) -> None:
        """Divide lr by 10 (lr_factor) on a plateau of the validation error, or at fixed epochs."""
        cfg, st = self.cfg, self.state
        sch = st["schedule"]
        old = st["lr"]
        if cfg["schedule"] == "steps":
            if rec["epoch"] in cfg["steps"]:
                st["lr"] = old * cfg["lr_factor"]
                sch["reductions"] += 1
        elif cfg["schedule"] == "plateau":
            metric = rec["val_top1"] if rec["val_top1"] is not None else rec["train_loss"]
            if sch["best"] is None or metric < sch["best"] - cfg["min_improvement"]:
                sch["best"] = metric
                sch["bad_epochs"] = 0
            else:
                sch["bad_epochs"] += 1
                if sch["bad_epochs"] >= cfg["patience"] and sch["reductions"] < cfg["max_reductions"]:
                    st["lr"] = old * cfg["lr_factor"]
                    sch["reductions"] += 1
                    sch["bad_epochs"] = 0
        if st["lr"] != old:
            what = "validation error stopped improving" if cfg["schedule"] == "plateau" else \
                f"epoch {rec['epoch']} is a step"
            self.log(f"learning rate {old:.2g} -> {st['lr']:.2g} ({what}; reduction "
                     f"{sch['reductions']})")

    def _interrupted(self) -> str:
        st = self.state
        st["status"] = "interrupted"
        self._save()
        self._plots(force=True)
        where = f"epoch {st['epoch'] + 1}, batch {st['batch']}" if st["batch"] else \
            f"after epoch {st['epoch']}"
        self.log(f"interrupted {where} (step {st['step']})"
                 + (f"; checkpoint saved: {self.checkpoint_path}" if self.run_dir else ""))
        return "interrupted"

    def _diverged(self, loss) -> str:
        st = self.state
        st["status"] = "diverged"
        msg = (f"the loss became {loss} at epoch {st['epoch'] + 1}, step {st['step']} "
               f"(lr {st['lr']:.2g}): training stopped")
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            msg += f"; the last good checkpoint is {self.checkpoint_path}"
        else:
            msg += "; no checkpoint was written yet"
        self.log(msg + ". A smaller --lr may help.")
        return "diverged"

    # ---- files --------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.run_dir is None:
            return
        save_checkpoint(self.checkpoint_path, self.net, self.state, extra=self.extra,
                        info=self.info)

    def _metrics_path(self):
        return self.run_dir / "metrics.jsonl" if self.run_dir else None

    def _read_history(self) -> list[dict]:
        p = self._metrics_path()
        if p is None or not p.exists():
            return []
        hist = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        # Lines of epochs the checkpoint does not include (written just before a crash) go.
        kept = [h for h in hist if h["epoch"] <= self.state["epoch"]]
        if len(kept) != len(hist):
            atomic_write_text(p, "".join(json.dumps(h) + "\n" for h in kept))
        return kept

    def _append_metrics(self, rec) -> None:
        p = self._metrics_path()
        if p is not None:
            with open(p, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    def _plots(self, force: bool = False) -> None:
        if self.run_dir is None:
            return
        now = time.perf_counter()
        if not force and now - self._last_plot < self.plot_every:
            return
        self._last_plot = now
        from ._plots import plot_curves, plot_filters

        spec = self.net.spec
        if self.history:
            plot_curves(self.history, self.run_dir / "curves.png",
                        title=f"{spec.name}: {self.run_dir.name}")
        conv = spec.first_conv()
        if conv is not None:
            name = f"{conv.name}.weight"
            w = self.net.state_dict(names=[name])[name]
            cols = spec.columns if conv.blocks > 1 else 1
            plot_filters(w, cols, self.run_dir / f"{conv.name}_filters.png",
                         title=f"{spec.name} {conv.name}: {w.shape[0]} kernels of "
                               f"{w.shape[2]}x{w.shape[3]}x{w.shape[1]}, epoch {self.state['epoch']}")


def _fresh_partial() -> dict:
    return {"loss": 0.0, "errors": 0, "images": 0, "seconds": 0.0, "wait": 0.0}


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train an AlexNet-style network with the paper's SGD (momentum 0.9, weight "
                    "decay 5e-4, lr divided by 10 when validation error stops improving). With "
                    "no arguments: alexnet-small on a generated data set, on the CPU, in a few "
                    "minutes.",
        epilog="Exit status: 0 done, 1 training diverged (non-finite loss), 2 bad input "
               "(data, model, options), 130 interrupted (Ctrl-C; the checkpoint is saved, "
               "continue with --resume RUN_DIR).")
    p.add_argument("--data", metavar="PATH",
                   help="data set: a folder of class folders (optionally train/ and val/), a "
                        "prepared shard directory, MNIST IDX files or CIFAR batches (default: "
                        "a generated set of small images, made once and cached)")
    p.add_argument("--model", metavar="NAME|FILE",
                   help="model name (alexnet, alexnet-small, cifar, lenet5) or a .toml model "
                        f"file (default: {DEFAULT_MODEL})")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="passes over the training set (default: the model's [learning] epochs; "
                        "alexnet-small: 18)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="images per SGD step (default: the model's [learning] batch_size: 128 "
                        "for alexnet as in the paper, 64 for alexnet-small)")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="initial learning rate (default: the model's [learning] lr, 0.01 as "
                        "in the paper for every shipped model)")
    p.add_argument("--patience", type=int, metavar="N",
                   help="epochs without improvement of the validation error before lr is "
                        "divided by 10 (default: the model's, 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where the layers run (default: cuda when a GPU is usable, else cpu)")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="GPUs for --device cuda; 2 puts each column of a two-column model on "
                        "its own GPU (default: 1)")
    p.add_argument("--split-columns", action="store_true", default=None,
                   help="run each column as its own subgraph, joined by explicit transfers "
                        "(implied by --gpus 2; default: one merged graph per device)")
    p.add_argument("--seed", type=int, metavar="N",
                   help="seed for initialisation, data order, crops and dropout (default: 0)")
    p.add_argument("--out", metavar="DIR",
                   help="run directory (default: runs/<model>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its checkpoint, with its settings "
                        "(--epochs may raise the epoch count, --workers/--device may change)")
    p.add_argument("--summary", action="store_true",
                   help="print the layer table (output shapes, parameters, FLOPs) and exit")
    p.add_argument("--workers", type=int, metavar="N",
                   help="data loading processes; 0 loads in the training process (default: "
                        "half the cores, 1 to 4; decoding an image folder uses all cores)")
    return p


def _devices(args) -> list[str]:
    from . import cuda_available, cuda_status

    device = args.device
    if device is None:  # the GPU when there is a real one (not tools/cuda_emu's CPU emulation)
        status = cuda_status()
        device = "cuda" if status["available"] and not status.get("emulated") else "cpu"
    if device == "cpu":
        if args.gpus not in (None, 1):
            raise UsageError("--gpus needs --device cuda")
        return ["cpu"]
    if not cuda_available():
        raise UsageError(f"--device cuda: no usable GPU ({cuda_status()['reason']}); "
                         "this build/machine can train on the CPU only (--device cpu)")
    n = args.gpus or 1
    devices = [f"cuda:{i}" for i in range(n)]
    from .nn.device import check_device

    try:
        for d in devices:
            check_device(d)
    except ValueError as e:
        raise UsageError(f"--device cuda: {e}") from None
    return devices


def _check_positive(args):
    for name in ("epochs", "batch_size", "patience", "gpus"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive integer, got {v}")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UsageError(f"--lr: expected a positive number, got {args.lr}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers: expected 0 or more, got {args.workers}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed: expected 0 or more, got {args.seed}")


def _default_data() -> Path:
    from .data.synthetic import default_dataset

    return Path(default_dataset())


def main(argv=None, *, on_step=None) -> int:
    """Entry point; returns the exit status (see ``--help``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv

    def checked_run():
        _check_positive(args)
        return _run(args, on_step=on_step)

    return run_cli(PROG, checked_run, usage_errors=(UsageError, ModelError))


def _run(args, on_step=None) -> int:
    if args.summary:
        spec = load_model(args.model or DEFAULT_MODEL)
        if args.data:
            ds = open_data(args.data, spec, need_train=False, workers=args.workers)
            spec = load_model(args.model or DEFAULT_MODEL, classes=ds.num_classes)
        print(format_summary(spec))
        return 0
    devices = _devices(args)
    if args.resume:
        return _resume(args, devices, on_step)

    overrides = {"learning": {"epochs": args.epochs, "batch_size": args.batch_size,
                              "lr": args.lr, "patience": args.patience}}
    model = args.model or DEFAULT_MODEL
    spec = load_model(model, overrides=overrides)
    data_path = Path(args.data) if args.data else _default_data()
    ds = open_data(data_path, spec, workers=args.workers)
    spec = load_model(model, classes=ds.num_classes, overrides=overrides)
    seed = args.seed if args.seed is not None else 0
    split = bool(args.split_columns) or len(devices) > 1
    if split and spec.columns == 1:
        raise UsageError(f"--split-columns: model '{spec.name}' has one column")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.out) if args.out else Path("runs") / f"{spec.name}-{stamp}"
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UsageError(f"--out {run_dir}: already holds a run; continue it with --resume "
                         f"{run_dir} or choose another --out")
    config = {"model": spec.name, "model_source": str(spec.path), "data": str(data_path.resolve()),
              "seed": seed, "devices": devices, "split_columns": split,
              "workers": args.workers, "classes": ds.num_classes,
              "class_names": list(ds.class_names), "learning": spec.learning,
              "data_prep": spec.data, "argv": list(args.argv)}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(run_dir / "model.toml", spec.text)
    (run_dir / "metrics.jsonl").write_text("")
    net = Net(spec, split_columns=split, devices=devices, seed=seed)
    return _train(net, spec, ds, config, run_dir, state=None, workers=args.workers,
                  on_step=on_step)


def _resume(args, devices, on_step) -> int:
    run_dir = Path(args.resume)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise UsageError(f"--resume {run_dir}: no config.json (not a run directory)")
    try:
        ckpt = load_checkpoint(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--resume: {e}") from None
    config = json.loads(cfg_path.read_text())
    ignored = [f"--{k.replace('_', '-')}" for k in ("model", "batch_size", "lr", "patience",
                                                     "seed", "out", "split_columns")
               if getattr(args, k) not in (None, False)]
    if ignored:
        print(f"{PROG}: note: resuming uses the run's own settings; ignoring {', '.join(ignored)}",
              file=sys.stderr)
    learning = dict(config["learning"])
    if args.epochs is not None:
        learning["epochs"] = args.epochs
        config["learning"]["epochs"] = args.epochs
    spec = parse_model(ckpt.model_text, path=str(run_dir / "model.toml"),
                       classes=config["classes"], overrides={"learning": learning})
    data_path = Path(args.data) if args.data else Path(config["data"])
    ds = open_data(data_path, spec, workers=args.workers)
    if list(ds.class_names) != config["class_names"]:
        raise UsageError(f"--data {data_path}: its classes differ from the run's")
    split = config["split_columns"] or len(devices) > 1
    net = Net(spec, split_columns=split, devices=devices, seed=config["seed"])
    net.load_state_dict(ckpt.params)
    net.load_state_dict(ckpt.velocities, kind="velocity")
    state = ckpt.state
    if state.get("status") == "finished" and state["epoch"] >= learning["epochs"]:
        print(f"{PROG}: the run in {run_dir} already finished {state['epoch']} epochs "
              "(raise --epochs to continue)")
        return 0
    state["status"] = "running"
    atomic_write_text(cfg_path, json.dumps(config, indent=2) + "\n")
    return _train(net, spec, ds, config, run_dir, state=state,
                  workers=args.workers if args.workers is not None else config.get("workers"),
                  on_step=on_step)


def _train(net, spec, ds, config, run_dir: Path, *, state, workers, on_step) -> int:
    from .data import BatchLoader

    learning, prep = spec.learning, spec.data
    seed = config["seed"]
    log_file = open(run_dir / "train.log", "a", encoding="utf-8")

    def log(line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line)
        log_file.write(line + "\n")
        log_file.flush()

    train_split, val_split = ds.split("train"), ds.split("val")
    try:
        loader = BatchLoader(train_split, batch_size=learning["batch_size"], crop=prep["crop"],
                             mean=ds.mean, pca=ds.pca, train=True, flip=prep["flip"],
                             lighting=prep["lighting"], scale=prep["scale"], seed=seed,
                             workers=workers)
    except ValueError as e:
        log_file.close()
        raise UsageError(str(e)) from None
    val_loader = None
    if val_split is not None and len(val_split):
        val_loader = BatchLoader(val_split, batch_size=learning["batch_size"], crop=prep["crop"],
                                 mean=ds.mean, train=False, flip=False, lighting=0.0,
                                 scale=prep["scale"], seed=seed, workers=0)
    info = {"classes": config["classes"], "class_names": config["class_names"],
            "data": config["data"], "seed": seed, "model": spec.name}
    trainer = Trainer(net, learning, loader, val_loader, run_dir=run_dir, seed=seed,
                      state=state, extra={"mean": ds.mean}, info=info, log=log,
                      on_step=on_step)
    if state is None:
        log(f"{spec.name}: {net.num_params:,} parameters, {len(train_split)} training and "
            f"{len(val_split) if val_split is not None else 0} validation images, "
            f"{ds.num_classes} classes ({ds.format}: {config['data']})")
        log(f"devices {', '.join(net.devices)}"
            + (" (columns split)" if net.split else "")
            + f"; batch {learning['batch_size']}, lr {learning['lr']:g}, momentum "
              f"{learning['momentum']:g}, weight decay {learning['weight_decay']:g}, "
              f"{learning['epochs']} epochs; run directory {run_dir}")
    else:
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, batch {state['batch']} "
            f"(step {state['step']}, lr {state['lr']:.2g})")

    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if trainer._stop:                 # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        trainer.request_stop()
        log("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    t0 = time.perf_counter()
    try:
        signal.signal(signal.SIGINT, on_sigint)
        result = trainer.train()
    finally:
        signal.signal(signal.SIGINT, previous)
        trainer.close()
        loader.close()
        if val_loader is not None:
            val_loader.close()
        log_file.close()
    wall = time.perf_counter() - t0
    if result == "diverged":
        print(f"{PROG}: training diverged; see {run_dir / 'train.log'}", file=sys.stderr)
        return 1
    if result == "interrupted":
        print(f"continue with: {PROG} --resume {run_dir}")
        return 130
    _report(trainer, run_dir, wall, ds.num_classes, config)
    return 0


def _report(trainer, run_dir, wall, classes, config) -> None:
    h = trainer.history[-1] if trainer.history else None
    print(f"done: {trainer.state['epoch']} epochs, {trainer.state['step']} steps in {wall:.0f} s")
    if h and h["val_top1"] is not None:
        print(f"validation: top-1 error {100 * h['val_top1']:.1f}% (chance "
              f"{100 * (1 - 1 / classes):.0f}%), top-5 error {100 * h['val_top5']:.1f}%")
    elif h:
        print(f"training: top-1 error {100 * h['train_top1']:.1f}% (no validation split)")
    conv = trainer.net.spec.first_conv()
    print(f"run directory: {run_dir}")
    print(f"  metrics:     {run_dir / 'metrics.jsonl'}")
    print(f"  pictures:    {run_dir / 'curves.png'}"
          + (f", {run_dir / (conv.name + '_filters.png')}" if conv else ""))
    print(f"  checkpoint:  {run_dir / CHECKPOINT_NAME}")
    print(f"evaluate with ten views: python -m alexnet_ext.evaluate {run_dir} --data "
          f"{config['data']} --views 10")


if __name__ == "__main__":
    sys.exit(main())
