"""The training loop: :class:`Trainer`, :func:`evaluate_loader` and :func:`on_device`.

The loop (:class:`Trainer`) is the paper's: mini-batches of 128 with random crops, flips and PCA
lighting (:class:`alexnet_ext.data.BatchLoader`), momentum 0.9, weight decay 5e-4 as in
``v <- 0.9 v - 0.0005 lr w - lr dL/dw; w <- w + v``, learning rate 0.01 divided by 10 whenever
the validation error stops improving (at most 3 times), or at fixed epochs.

A step queues forward, backward and update, then reads the loss back once; the loop's state
(epoch, batch within the epoch, step, lr, schedule, running sums of the epoch) is what a checkpoint
holds, so a run continues from any step. The command line around it is
:mod:`alexnet_ext.train`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from . import ops
from .nn import Net, save_checkpoint
from .nn import device as D
from .nn.checkpoint import CHECKPOINT_NAME, atomic_write_text

__all__ = ["Trainer", "evaluate_loader", "on_device"]


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
                    self._backward()  # [dist] net.backward(), gradients all-reduced across ranks
                    net.update(lr=st["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"], bias_decay=cfg["bias_decay"])
                    loss = float(loss)
                    err = ops.top_k_errors(net.probs, net.labels, ks=k1)[0]
                    n = len(y)
                    loss, err, n = self._step_totals(loss, err, n)  # [dist] over all ranks
                    if not math.isfinite(loss):
                        bar.close()
                        return self._diverged(loss)
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
                    if self._should_stop() and st["batch"] < len(loader):  # [dist] agreed
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
            if self._should_stop() and st["epoch"] < epochs:  # [dist] agreed
                return self._interrupted()
        st["status"] = "finished"
        self._save()
        self._plots(force=True)
        return "finished"

    # ---- [dist] hooks: alexnet_ext.distributed.DistributedTrainer overrides these -------------

    def _backward(self) -> None:
        self.net.backward()

    def _step_totals(self, loss: float, errors: int, images: int):
        """(mean loss, error count, images) of the step over every rank: this process's here."""
        return loss, errors, images

    def _should_stop(self) -> bool:
        return self._stop

    def _evaluate(self) -> dict:
        return evaluate_loader(self.net, self.val_loader, progress=self.progress)

    def _end_epoch(self) -> None:
        st, part = self.state, self.state["partial"]
        e = st["epoch"] + 1
        rec = {"epoch": e, "step": st["step"], "lr": st["lr"],
               "train_loss": part["loss"] / part["images"],
               "train_top1": part["errors"] / part["images"],
               "val_loss": None, "val_top1": None, "val_top5": None}
        t0 = time.perf_counter()
        if self.val_loader is not None:
            v = self._evaluate()  # [dist] every rank its shard, totals all-reduced
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
