"""The training loop: :class:`Trainer`, :func:`evaluate_loader` and :func:`on_device`.

The loop (:class:`Trainer`) is the paper's: mini-batches of 128 with random crops, flips and PCA
lighting (:class:`alexnet_ext.data.BatchLoader`), momentum 0.9, weight decay 5e-4 as in
``v <- 0.9 v - 0.0005 lr w - lr dL/dw; w <- w + v``, learning rate 0.01 divided by 10 whenever
the validation error stops improving (at most 3 times), or at fixed epochs.

A step queues forward, backward and update, then reads the loss back once; the loop's state
(epoch, batch within the epoch, step, lr, schedule, running sums of the epoch) is what a checkpoint
holds, so a run continues from any step. The command line around it is
:mod:`alexnet_ext.train`.

What a run directory receives from the loop: ``metrics.jsonl`` (a line per epoch), ``steps.jsonl``
(a line per step: loss, error, lr, step and data-wait seconds), ``checkpoint.safetensors`` (the
last good state: every epoch, every ``checkpoint_steps`` steps or ``checkpoint_seconds`` seconds,
and on a stop request), ``best.safetensors`` (the epoch with the lowest validation error), the
pictures, and TensorBoard event files under ``tensorboard/`` when ``tensorboardX`` or
``tensorboard`` is importable. Both JSON-lines files are strict JSON: a non-finite number is written
as null and its key listed under ``"non_finite"``. A checkpoint is never written from non-finite
weights or after a non-finite validation loss.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from . import ops
from .nn import Net
from .nn import device as D
from .nn.checkpoint import (BEST_NAME, CHECKPOINT_NAME, NonFiniteError, atomic_write_text,
                            open_append, save_checkpoint)

__all__ = ["Trainer", "evaluate_loader", "on_device", "json_record"]

# Results of Trainer.train().
FINISHED, INTERRUPTED, DIVERGED, WRITE_FAILED = "finished", "interrupted", "diverged", "write_failed"


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
    pinned (close the feed before the loader). A loader that can (``set_dtype``) is switched to
    uint8 batches, which the feed finishes on the GPU (a quarter of the bytes cross the bus) in
    the net's input dtype (bfloat16 for a bf16 net); on the CPU the loader keeps its float32
    path."""
    gpu = D.gpu_index(net.data.device)
    if gpu is None:
        return None
    from .data.device_feed import DeviceFeed
    if hasattr(loader, "set_dtype"):
        loader.set_dtype("uint8")
        return DeviceFeed(gpu, pin=getattr(loader, "workers", 0) > 0, mean=loader.mean,
                          scale=loader.scale, dtype=net.data.dtype)
    return DeviceFeed(gpu, pin=getattr(loader, "workers", 0) > 0)


def json_record(rec: dict) -> str:
    """``rec`` as one line of strict JSON: non-finite floats become null and their keys are
    listed under ``"non_finite"`` (bare NaN is not JSON)."""
    bad = [k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        rec = dict(rec, **{k: None for k in bad}, non_finite=bad)
    return json.dumps(rec, allow_nan=False)


def _tensorboard(log_dir: Path):
    """An object with ``add_scalar(tag, value, step)``, ``flush()`` and ``close()`` writing event
    files into ``log_dir``, or None when neither tensorboardX nor tensorboard is installed."""
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter(str(log_dir))
    except ImportError:
        pass
    try:  # tensorboard alone: its event writer and protos (what torch's SummaryWriter wraps)
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        return None

    class _Writer:
        def __init__(self):
            self.w = EventFileWriter(str(log_dir))

        def add_scalar(self, tag, value, step):
            s = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
            self.w.add_event(Event(wall_time=time.time(), step=int(step), summary=s))

        def flush(self):
            self.w.flush()

        def close(self):
            self.w.close()

    return _Writer()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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
        checkpoint_steps, checkpoint_seconds: also save a checkpoint within an epoch every that
            many steps / seconds of the loop (None: not by that measure).
        log_steps, log_seconds: log a step line (loss, error, img/s, data wait over the lines'
            interval) every that many steps / seconds (None: not by that measure).
        tensorboard: write TensorBoard event files when a writer library is installed.
        cuda_graph: on one GPU, replay each step of the first batch's shape as a CUDA graph
            (:meth:`Net.step_graph`; a short last batch runs eagerly): the same numbers.
    """

    def __init__(self, net: Net, learning: dict, train_loader, val_loader=None, *,
                 run_dir=None, seed: int = 0, state: dict | None = None, extra=None,
                 info=None, log=print, progress: bool = True, on_step=None,
                 plot_every: float = 10.0, checkpoint_steps: int | None = None,
                 checkpoint_seconds: float | None = 600.0, log_steps: int | None = None,
                 log_seconds: float | None = None, tensorboard: bool = True,
                 cuda_graph: bool = True):
        self.net, self.cfg = net, dict(learning)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed = seed
        self.extra, self.info = extra or {}, info or {}
        self.log, self.progress, self.on_step = log, progress, on_step
        self.plot_every = plot_every
        self.checkpoint_steps, self.checkpoint_seconds = checkpoint_steps, checkpoint_seconds
        self.log_steps, self.log_seconds = log_steps, log_seconds
        self.resumed = state is not None
        self.state = state or {
            "epoch": 0, "batch": 0, "step": 0, "lr": self.cfg["lr"], "seed": seed,
            "schedule": {"best": None, "bad_epochs": 0, "reductions": 0},
            "partial": _fresh_partial(), "status": "running",
        }
        self.history = self._read_history()
        self._trim_steps()
        self._stop = False
        self.stop_signal = None          # the signal number that asked to stop, if one did
        self.write_error = None          # the OSError that made train() return "write_failed"
        self._last_plot = 0.0
        self._last_save = time.monotonic()
        self._window = _fresh_window(train_loader.wait_seconds)
        self._logged = False
        self._steps_file = open_append(self.run_dir / "steps.jsonl") if self.run_dir else None
        self._tb = (_tensorboard(self.run_dir / "tensorboard")
                    if self.run_dir is not None and tensorboard else None)
        self._feed = on_device(net, train_loader)
        single_gpu = len(set(net.devices)) == 1 and D.is_cuda(net.devices[0])  # and not [dist]:
        self._graph_wanted = cuda_graph and single_gpu and type(self)._backward is Trainer._backward
        self._graph = None  # [graph] a StepGraph once the first batch gives the shape

    def close(self) -> None:
        """Release what the loop holds: the GPU side (pinned loader slots; before the loaders
        are closed) and the step log files."""
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        if self._steps_file is not None:
            self._steps_file.close()
            self._steps_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # ---- control ------------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None) -> None:
        """Finish the current step, save a checkpoint and return (what Ctrl-C and SIGTERM do)."""
        self._stop = True
        if signum is not None and self.stop_signal is None:
            self.stop_signal = signum

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_NAME if self.run_dir else None

    # ---- the loop -----------------------------------------------------------------------------

    def train(self) -> str:
        """Run until the configured epoch count. Returns "finished", "interrupted", "diverged"
        or "write_failed" (a checkpoint could not be written; :attr:`write_error` says why)."""
        from tqdm import tqdm

        from .data.loader import WorkerError

        st, cfg, net = self.state, self.cfg, self.net
        epochs = cfg["epochs"]
        k1 = (1,)
        while st["epoch"] < epochs:
            e = st["epoch"]
            part = st["partial"]
            loader = self.train_loader
            self._wait0 = loader.wait_seconds
            self._t0 = time.perf_counter()
            self._window = _fresh_window(loader.wait_seconds)   # step lines: within an epoch
            bar = tqdm(total=len(loader), initial=st["batch"], desc=f"epoch {e + 1}/{epochs}",
                       unit="batch", leave=False, dynamic_ncols=True,
                       disable=None if self.progress else True)
            try:
                batches = loader.epoch(e, start_batch=st["batch"])
                for x, y in batches if self._feed is None else self._feed(batches):
                    # The whole step is queued before anything is read back: on a GPU the host
                    # waits once per step, at its end (the loss and the error count).
                    loss = self._step(x, y)
                    loss = float(loss)
                    err = ops.top_k_errors(net.probs, net.labels, ks=k1)[0]
                    n = len(y)
                    loss, err, n = self._step_totals(loss, err, n)  # over all ranks (data parallel)
                    if not math.isfinite(loss):
                        bar.close()
                        self._record_step(loss, None, n)
                        return self._diverged(f"the loss became {loss} at epoch {e + 1}, "
                                              f"step {st['step'] + 1}")
                    st["step"] += 1
                    st["batch"] += 1
                    part["loss"] += loss * n
                    part["errors"] += err
                    part["images"] += n
                    self._record_step(loss, err, n)
                    bar.update(1)
                    if st["batch"] % 5 == 1 or st["batch"] == len(loader):
                        secs = part["seconds"] + time.perf_counter() - self._t0
                        wait = part["wait"] + loader.wait_seconds - self._wait0
                        bar.set_postfix(loss=f"{part['loss'] / part['images']:.3f}",
                                        err=f"{100 * part['errors'] / part['images']:.1f}%",
                                        ips=f"{part['images'] / max(secs, 1e-9):.0f}",
                                        wait=f"{100 * wait / max(secs, 1e-9):.0f}%",
                                        refresh=False)
                    if self.on_step is not None:
                        self.on_step(self)
                    if self._should_stop() and st["batch"] < len(loader):  # agreed by all ranks
                        self._clock()
                        bar.close()
                        return self._interrupted()
                    if st["batch"] < len(loader) and self._checkpoint_due():
                        self._clock()
                        failed = self._save()
                        if failed:
                            return failed
            except WorkerError:
                # Ctrl-C to the process group reaches the loader's workers too (while they
                # start, they may die of it): the state is still that of a finished step.
                if not self._stop:
                    raise
                self._clock()
                return self._interrupted()
            finally:
                bar.close()
            self._clock()
            if part["images"] == 0:
                raise RuntimeError("the training loader yielded no batches")
            failed = self._end_epoch()
            if failed:
                return failed
            if self._should_stop() and st["epoch"] < epochs:  # agreed by all ranks
                return self._interrupted()
        st["status"] = FINISHED
        failed = self._save()
        if failed:
            return failed
        self._plots(force=True)
        return FINISHED

    def _clock(self) -> None:
        """Fold the time (and data wait) since the last fold into the epoch's partial sums."""
        now, part, loader = time.perf_counter(), self.state["partial"], self.train_loader
        part["seconds"] += now - self._t0
        part["wait"] += loader.wait_seconds - self._wait0
        self._t0, self._wait0 = now, loader.wait_seconds

    def _checkpoint_due(self) -> bool:
        if self.run_dir is None:
            return False
        if self.checkpoint_steps and self.state["step"] % self.checkpoint_steps == 0:
            return True
        return bool(self.checkpoint_seconds) and \
            time.monotonic() - self._last_save >= self.checkpoint_seconds

    # ---- [dist] hooks: alexnet_ext.distributed.DistributedTrainer overrides these -------------

    def _backward(self) -> None:
        self.net.backward()

    def _step(self, x, y):
        """Queue one training step; returns its PendingLoss (a float on the CPU)."""
        st, cfg, net = self.state, self.cfg, self.net
        hyper = {k: cfg[k] for k in ("momentum", "weight_decay", "bias_decay")} | {"lr": st["lr"]}
        if self._graph_wanted and self._graph is None:
            self._graph = net.step_graph(tuple(x.shape), y.dtype)
        g = self._graph
        if g is not None and tuple(x.shape) == g.x_shape and y.dtype == g.labels.dtype:
            return g.run(x, y, step=st["step"], seed=self.seed, **hyper)
        loss = net.forward(x, y, train=True, step=st["step"], seed=self.seed, wait=False)
        self._backward()  # [dist] net.backward(), gradients all-reduced across ranks
        net.update(**hyper)
        return loss

    def _step_totals(self, loss: float, errors: int, images: int):
        """(mean loss, error count, images) of the step over every rank: this process's here."""
        return loss, errors, images

    def _should_stop(self) -> bool:
        return self._stop

    def _evaluate(self) -> dict:
        return evaluate_loader(self.net, self.val_loader, progress=self.progress)

    def _end_epoch(self) -> str | None:
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
        rec["precision"] = self.net.precision  # may differ between epochs after a resume
        self.history.append(rec)
        self._append_metrics(rec)
        for k in ("lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                  "img_per_s"):
            if self._tb is not None and rec[k] is not None and math.isfinite(rec[k]):
                self._tb.add_scalar(f"epoch/{k}", rec[k], st["step"])
        classes = self.net.spec.classes
        msg = (f"epoch {e:3d}  lr {st['lr']:.2g}  train loss {rec['train_loss']:.4f} "
               f"top-1 {100 * rec['train_top1']:5.1f}%")
        if rec["val_top1"] is not None:
            msg += f"  val loss {rec['val_loss']:.4f} top-1 {100 * rec['val_top1']:5.1f}%"
            if classes > 5:              # with 5 classes or fewer top-5 error is always 0
                msg += f" top-5 {100 * rec['val_top5']:5.1f}%"
        msg += (f"  {rec['img_per_s']:.0f} img/s  {rec['seconds']:.1f}s"
                f"  data wait {100 * rec['data_wait']:.0f}%")
        self.log(msg)
        if rec["val_loss"] is not None and not math.isfinite(rec["val_loss"]):
            # The weights went bad in the epoch's last steps (the training losses were still
            # finite): this state must not become the checkpoint.
            return self._diverged(f"the validation loss became {rec['val_loss']} after epoch {e}")
        st["epoch"] = e
        st["batch"] = 0
        st["partial"] = _fresh_partial()
        self._schedule(rec)
        best = rec["val_top1"] is not None and (st.get("best_val_top1") is None
                                                or rec["val_top1"] < st["best_val_top1"])
        if best:
            st["best_val_top1"] = rec["val_top1"]
        failed = self._save(best=best)
        if failed:
            return failed
        self._plots(force=st["epoch"] >= self.cfg["epochs"])
        return None

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
        st["status"] = INTERRUPTED
        failed = self._save()
        if failed:
            return failed
        self._plots(force=True)
        where = f"epoch {st['epoch'] + 1}, batch {st['batch']}" if st["batch"] else \
            f"after epoch {st['epoch']}"
        self.log(f"interrupted {where} (step {st['step']})"
                 + (f"; checkpoint saved: {self.checkpoint_path}" if self.run_dir else ""))
        return INTERRUPTED

    def _diverged(self, what: str) -> str:
        st = self.state
        st["status"] = DIVERGED
        msg = f"{what} (lr {st['lr']:.2g}): training stopped"
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            msg += f"; the last good checkpoint is {self.checkpoint_path}"
        else:
            msg += "; no checkpoint was written yet"
        self.log(msg + ". A smaller --lr may help.")
        return DIVERGED

    # ---- step lines ---------------------------------------------------------------------------

    def _record_step(self, loss: float, err, n: int) -> None:
        """steps.jsonl, TensorBoard, the step line and the first step's plausibility check."""
        st, w, loader = self.state, self._window, self.train_loader
        now = time.perf_counter()
        step = st["step"] if err is not None else st["step"] + 1
        rec = {"step": step, "epoch": st["epoch"] + 1, "batch": st["batch"], "loss": loss,
               "top1": None if err is None else err / n, "lr": st["lr"],
               "seconds": round(now - w["t_step"], 6),
               "data_wait": round(loader.wait_seconds - w["wait_step"], 6), "time": time.time()}
        w["t_step"], w["wait_step"] = now, loader.wait_seconds
        if self._steps_file is not None:
            self._steps_file.write(json_record(rec) + "\n")
            self._steps_file.flush()
        if err is None:
            return
        if self._tb is not None:
            self._tb.add_scalar("step/loss", loss, step)
            self._tb.add_scalar("step/top1", err / n, step)
        w["loss"] += loss * n
        w["errors"] += err
        w["images"] += n
        w["steps"] += 1
        if step == 1 and not self.resumed:
            self._check_first_loss(loss)
        secs = now - w["t0"]
        if (self.log_steps and w["steps"] >= self.log_steps) or \
                (self.log_seconds and (secs >= self.log_seconds or not self._logged)):
            wait = loader.wait_seconds - w["wait0"]
            self.log(f"step {step}  epoch {st['epoch'] + 1} batch {st['batch']}/{len(loader)}  "
                     f"loss {w['loss'] / w['images']:.4f}  top-1 error "
                     f"{100 * w['errors'] / w['images']:.1f}%  "
                     f"{w['images'] / max(secs, 1e-9):.0f} img/s  "
                     f"data wait {100 * min(wait / max(secs, 1e-9), 1.0):.0f}%")
            self._window = _fresh_window(loader.wait_seconds)
            self._logged = True
            if self._tb is not None:
                self._tb.flush()

    def _check_first_loss(self, loss: float) -> None:
        chance = math.log(self.net.spec.classes)
        if loss > 2 * chance + 1:
            self.log(f"note: the first step's loss {loss:.3g} is far above ln(classes) = "
                     f"{chance:.3g}, the loss of a uniform guess: the initial weights "
                     "(init_std) or the input scale may be too large")

    # ---- files --------------------------------------------------------------------------------

    def _save(self, best: bool = False) -> str | None:
        """Write the checkpoint (and ``best.safetensors`` when ``best``). None when written;
        else the result the loop returns: "diverged" for non-finite weights, "write_failed" when
        the file system refused (the previous checkpoint stays)."""
        if self.run_dir is None:
            return None
        path = self.checkpoint_path
        try:
            save_checkpoint(path, self.net, self.state, extra=self.extra, info=self.info)
            if best:
                path = self.run_dir / BEST_NAME
                save_checkpoint(path, self.net, self.state, extra=self.extra, info=self.info)
        except NonFiniteError as e:
            return self._diverged(f"{e.tensor} became non-finite at epoch {self.state['epoch'] + 1}, "
                                  f"step {self.state['step']}")
        except OSError as e:
            self.write_error = e
            self.log(f"could not write {path}: {e.strerror or e}; the previous checkpoint is kept")
            return WRITE_FAILED
        self._last_save = time.monotonic()
        return None

    def _metrics_path(self):
        return self.run_dir / "metrics.jsonl" if self.run_dir else None

    def _read_history(self) -> list[dict]:
        p = self._metrics_path()
        if p is None or not p.exists():
            return []
        hist, bad = [], []
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines()):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or not isinstance(rec.get("epoch"), int):
                    raise ValueError("not a metrics record")
            except ValueError:
                bad.append(i + 1)    # a line cut short by a crash or a full disk
                continue
            hist.append(rec)
        if bad:
            self.log(f"warning: {p}: ignored {len(bad)} unreadable line(s) ({', '.join(map(str, bad))}; "
                     "cut short by a crash or a full disk?)")
        # Lines of epochs the checkpoint does not include (written just before a crash) go.
        kept = [h for h in hist if h["epoch"] <= self.state["epoch"]]
        if bad or len(kept) != len(hist):
            atomic_write_text(p, "".join(json_record(h) + "\n" for h in kept))
        return kept

    def _trim_steps(self) -> None:
        """Drop step lines past the checkpoint's step (and a line cut short) before appending."""
        p = self.run_dir / "steps.jsonl" if self.run_dir else None
        if p is None or not p.exists() or not self.resumed:
            return
        keep, changed = [], False
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ok = json.loads(line)["step"] <= self.state["step"]
            except (ValueError, KeyError, TypeError):
                ok = False
            keep += [line] if ok else []
            changed |= not ok
        if changed:
            atomic_write_text(p, "".join(line + "\n" for line in keep))

    def _append_metrics(self, rec) -> None:
        p = self._metrics_path()
        if p is not None:
            with open_append(p) as f:
                f.write(json_record(rec) + "\n")

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
                        title=f"{spec.name}: {self.run_dir.name}", top5=spec.classes > 5)
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


def _fresh_window(wait: float) -> dict:
    """Sums over the interval of one step line (``wait``: the loader's wait_seconds now)."""
    t = time.perf_counter()
    return {"loss": 0.0, "errors": 0, "images": 0, "steps": 0, "t0": t, "t_step": t,
            "wait0": wait, "wait_step": wait}
