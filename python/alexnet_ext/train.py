"""``python -m alexnet_ext.train``: train a model with the paper's SGD.

With no arguments: the ``alexnet-small`` model on a generated data set of small images
(:func:`alexnet_ext.data.synthetic.default_dataset`), on the GPU when one is usable, else on the
CPU for a few minutes.

This module is the command line (options, run directory, resume, report); the loop itself is
:class:`alexnet_ext.trainer.Trainer`: the paper's SGD on mini-batches with random crops, flips and
PCA lighting, lr divided by 10 when the validation error stops improving.

A run directory (``--out``, default ``runs/<model>-<timestamp>``) receives:

* ``metrics.jsonl`` -- one JSON line per epoch (epoch, lr, train loss / top-1, validation loss /
  top-1 / top-5, images per second, seconds, fraction of time spent waiting for data);
* ``steps.jsonl`` -- one JSON line per step (loss, error, lr, seconds, data wait), and TensorBoard
  event files in ``tensorboard/`` when tensorboardX or tensorboard is installed;
* ``checkpoint.safetensors`` (+ ``checkpoint.json``) -- the last good state (parameters,
  velocities, the mean image, the loop's state), written atomically after every epoch, every
  ``--checkpoint-every`` (10 minutes by default) and on Ctrl-C or SIGTERM;
  ``best.safetensors`` -- the epoch with the lowest validation error;
* ``curves.png``, ``conv1_filters.png`` -- learning curves and the first layer's kernels, one
  band per column (the paper's Figure 3);
* ``config.json``, ``model.toml``, ``train.log``; ``.lock`` (held while a trainer uses the
  directory: a second one on the same directory stops at once).

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

from ._cli import (UsageError, gpu_unavailable_reason, load_params, open_data, parse_every,  # noqa: F401
                   run_cli)
from .nn import ModelError, Net, format_summary, load_checkpoint, load_model, parse_model
from .nn.net import PRECISIONS, check_precision
from .nn.checkpoint import (BEST_NAME, CHECKPOINT_NAME, RunDirLocked, atomic_write_text,
                            lock_run_dir, open_append)
from .trainer import Trainer, evaluate_loader  # noqa: F401  (evaluate_loader: public here too)

__all__ = ["main", "build_parser", "Trainer", "evaluate_loader"]

PROG = "python -m alexnet_ext.train"
DEFAULT_MODEL = "alexnet-small"

# Exit statuses (also in --help).
EXIT_DIVERGED, EXIT_USAGE, EXIT_IO, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 3, 130, 143
EXIT_STATUS = (
    "Exit status: 0 done; 1 training diverged (a non-finite loss or weights; the last good "
    "checkpoint is kept); 2 bad input (data, model, options, a damaged run directory or "
    "checkpoint, a run directory in use by another trainer), nothing trained; 3 a file could "
    "not be written (disk full, permissions) or the data loader failed, the last checkpoint is "
    "kept; 130 interrupted by Ctrl-C (SIGINT) and 143 stopped by SIGTERM, both after saving a "
    "checkpoint: continue with --resume RUN_DIR.")


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train an AlexNet-style network with the paper's SGD (momentum 0.9, weight "
                    "decay 5e-4, lr divided by 10 when validation error stops improving). With "
                    "no arguments: alexnet-small on a generated data set, on the GPU when one "
                    "is usable (else on the CPU, in a few minutes).",
        epilog=EXIT_STATUS + " Under torchrun (python -m torch.distributed.run) every rank "
               "trains on its share of each global batch, and a rank that loses another "
               "exits 3 (see README, Many GPUs).")
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
                   help="images per SGD step, over all ranks under torchrun (the global batch; "
                        "each of W ranks takes N/W) (default: the model's [learning] "
                        "batch_size: 128 for alexnet as in the paper, 64 for alexnet-small)")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="initial learning rate (default: the model's [learning] lr, 0.01 as "
                        "in the paper for every shipped model)")
    p.add_argument("--patience", type=int, metavar="N",
                   help="epochs without improvement of the validation error before lr is "
                        "divided by 10 (default: the model's, 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where the layers run (default: cuda when a GPU is usable, else cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="numerics (tf32 and bf16 on the GPU only): fp32 (default) computes in "
                        "fp32; tf32 runs the convolutions on the tensor cores with operands "
                        "rounded to tf32 (10-bit mantissa) and fp32 accumulation, as PyTorch's "
                        "allow_tf32, all else fp32; bf16 keeps every activation and gradient in "
                        "bfloat16 (8-bit significand; each op computes in fp32 and rounds what it "
                        "stores once), convolutions and fc layers on bf16 copies of the weights, "
                        "with fp32 master weights, momenta, probabilities and loss. May change on "
                        "--resume (checkpoints hold the fp32 masters)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", help="queue each "
                   "step op by op, not as a replayed CUDA graph (default on one GPU; same numbers)")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="GPUs to train on (implies --device cuda); 2 puts each column of a "
                        "two-column model on its own GPU (default: 1)")
    p.add_argument("--split-columns", action="store_true", default=None,
                   help="run each column as its own subgraph, joined by explicit transfers "
                        "(implied by --gpus 2; default: one merged graph per device)")
    p.add_argument("--seed", type=int, metavar="N",
                   help="seed for initialisation, data order, crops and dropout (default: 0)")
    p.add_argument("--out", metavar="DIR",
                   help="run directory (default: runs/<model>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint, with its "
                        "settings (--epochs may raise the epoch count, --workers/--device/"
                        "--precision may change, and so may the number of torchrun ranks); after a kill it continues from the last step checkpoint")
    p.add_argument("--checkpoint-every", metavar="N|TIME", default="10m",
                   help="also write the checkpoint within an epoch every N steps, or every TIME "
                        "of training (30s, 10m, 1h); 'off': only at epoch ends and on a stop "
                        "(default: 10m)")
    p.add_argument("--log-every", metavar="N|TIME",
                   help="print a step line (loss, error, img/s, data wait) every N steps or "
                        "every TIME (30s, 5m); 'off': none (default: 60s when the output is not "
                        "a terminal, where no progress bar is drawn; else off). Every step also "
                        "goes to RUN_DIR/steps.jsonl")
    p.add_argument("--summary", action="store_true",
                   help="print the layer table (output shapes, parameters, FLOPs) and exit")
    p.add_argument("--workers", type=int, metavar="N",
                   help="data loading processes; 0 loads in the training process (default: "
                        "half the cores, 1 to 4; decoding an image folder uses all cores)")
    # [dist] data parallelism under torchrun (alexnet_ext.distributed)
    p.add_argument("--dist-timeout", type=float, default=300.0, metavar="S",
                   help="under torchrun: seconds a rank waits in a collective for the others "
                        "before it exits with an error (default: 300)")
    return p


def _devices(args) -> list[str]:
    from . import cuda_available, cuda_status

    device = args.device
    if device is None:  # the GPU when there is a real one (not tools/cuda_emu's CPU emulation)
        status = cuda_status()
        real = status["available"] and not status.get("emulated")
        if args.gpus not in (None, 1):            # --gpus N asks for GPUs: --device cuda
            if not real:
                raise UsageError(f"--gpus {args.gpus}: no usable GPU "
                                 f"({gpu_unavailable_reason(status)}); train on the CPU "
                                 "without --gpus")
            device = "cuda"
        else:
            device = "cuda" if real else "cpu"
    if device == "cpu":
        if args.gpus not in (None, 1):
            raise UsageError(f"--gpus {args.gpus}: not with --device cpu")
        return ["cpu"]
    if not cuda_available():
        raise UsageError(f"--device cuda: no usable GPU ({gpu_unavailable_reason(cuda_status())}); "
                         "this build/machine can train on the CPU only (--device cpu)")
    n = args.gpus or 1
    first = args.dist.local_rank * n if getattr(args, "dist", None) else 0  # [dist] own GPUs
    devices = [f"cuda:{i}" for i in range(first, first + n)]
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
    args.checkpoint_steps, args.checkpoint_seconds = parse_every(args.checkpoint_every,
                                                                 "--checkpoint-every")
    log_every = args.log_every
    if log_every is None:
        log_every = "off" if sys.stdout.isatty() else "60s"
    args.log_steps, args.log_seconds = parse_every(log_every, "--log-every")
    if not (args.dist_timeout > 0 and math.isfinite(args.dist_timeout)):
        raise UsageError(f"--dist-timeout: expected a positive number, got {args.dist_timeout}")


def _default_data() -> Path:
    from .data.synthetic import default_dataset

    return Path(default_dataset())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def main(argv=None, *, on_step=None) -> int:
    """Entry point; returns the exit status (see ``--help``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv

    def checked_run():
        _check_positive(args)
        from . import distributed  # no torch import unless launched by torchrun

        try:
            if distributed.launched() and not args.summary:
                return distributed.run_rank(args, lambda: _run(args, on_step=on_step), prog=PROG)
            return _run(args, on_step=on_step)
        except OSError as e:  # a write the run needs failed outside the loop (disk full ...)
            where = f"{e.filename}: " if e.filename else ""
            print(f"{PROG}: error: {where}{e.strerror or e}", file=sys.stderr)
            return EXIT_IO

    return run_cli(PROG, checked_run, usage_errors=(UsageError, ModelError))


class _NoLock:
    def close(self) -> None:
        pass


def _lock(run_dir: Path, option: str):
    if _world() is not None and not _world().is_main:  # rank 0 alone owns the run directory
        return _NoLock()
    try:
        return lock_run_dir(run_dir)
    except RunDirLocked as e:
        raise UsageError(f"{option} {e}; wait for it to finish or stop it first") from None
    except OSError as e:
        raise UsageError(f"{option} {run_dir}: cannot lock the run directory "
                         f"({e.strerror or e})") from None


def _run(args, on_step=None) -> int:
    if args.summary:
        spec = load_model(args.model or DEFAULT_MODEL)
        if args.data:
            ds = open_data(args.data, spec, need_train=False, workers=args.workers)
            spec = load_model(args.model or DEFAULT_MODEL, classes=ds.num_classes)
        print(format_summary(spec))
        return 0
    devices = _devices(args)
    if args.precision not in (None, "fp32"):
        try:
            check_precision(args.precision, devices)
        except ValueError as e:
            raise UsageError(f"--precision {args.precision}: {e}") from None
    if args.resume:
        return _resume(args, devices, on_step)

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a directory")
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
    world = _world()
    main_rank = world is None or world.is_main
    if world is not None:  # rank 0's directory name (the clocks may differ)
        run_dir = Path(world.broadcast_object(str(run_dir)))
    if main_rank:  # rank 0 alone writes the run directory
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {run_dir}: cannot create the directory "
                             f"({e.strerror or e})") from None
    lock = _lock(run_dir, "--out")
    try:
        if (run_dir / CHECKPOINT_NAME).exists():
            raise UsageError(f"--out {run_dir}: already holds a run; continue it with --resume "
                             f"{run_dir} or choose another --out")
        config = {"model": spec.name, "model_source": str(spec.path),
                  "data": str(data_path.resolve()), "seed": seed, "devices": devices,
                  "split_columns": split, "workers": args.workers, "classes": ds.num_classes,
                  "class_names": list(ds.class_names), "learning": spec.learning,
                  "data_prep": spec.data, "argv": list(args.argv),
                  "world_size": world.size if world is not None else 1,
                  "precision": args.precision or "fp32", "cuda_graph": args.cuda_graph}
        if main_rank:
            try:
                atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
                atomic_write_text(run_dir / "model.toml", spec.text)
                atomic_write_text(run_dir / "metrics.jsonl", "")
                atomic_write_text(run_dir / "steps.jsonl", "")
            except OSError as e:
                raise UsageError(f"--out {run_dir}: cannot write ({e.strerror or e})") from None
        net = Net(spec, split_columns=split, devices=devices, seed=seed,
                  precision=config["precision"])
        return _train(net, spec, ds, config, run_dir, state=None, args=args, workers=args.workers,
                      on_step=on_step)
    finally:
        lock.close()


_CONFIG_KEYS = ("data", "seed", "classes", "class_names", "learning", "split_columns")
_STATE_KEYS = ("epoch", "batch", "step", "lr", "schedule", "partial")


def _read_config(cfg_path: Path) -> dict:
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"--resume: {cfg_path}: not UTF-8 text (damaged)") from None
    except ValueError as e:
        raise UsageError(f"--resume: {cfg_path}: not valid JSON ({e.msg} at line {e.lineno}; "
                         "cut short?)") from None
    except OSError as e:
        raise UsageError(f"--resume: {cfg_path}: cannot read ({e.strerror or e})") from None
    if not isinstance(config, dict):
        raise UsageError(f"--resume: {cfg_path}: not a run configuration (a JSON object)")
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing or not isinstance(config["learning"], dict):
        raise UsageError(f"--resume: {cfg_path}: incomplete (no {', '.join(map(repr, missing))})"
                         if missing else f"--resume: {cfg_path}: 'learning' is not an object")
    return config


def _load_weights(net, ckpt) -> None:
    """Parameters and velocities of ``ckpt`` into ``net``; a mismatch is a UsageError naming
    the file."""
    load_params(net, ckpt)
    if not ckpt.velocities:
        raise UsageError(f"{ckpt.path}: holds no velocities (momentum), so training cannot "
                         "continue from it exactly")
    try:
        net.load_state_dict(ckpt.velocities, kind="velocity")
    except ValueError as e:
        raise UsageError(f"{ckpt.path}: velocities: {e}") from None


def _resume(args, devices, on_step) -> int:
    run_dir = Path(args.resume)
    cfg_path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise UsageError(f"--resume {run_dir}: not a directory")
    if not cfg_path.is_file():
        raise UsageError(f"--resume {run_dir}: no config.json (not a run directory)")
    lock = _lock(run_dir, "--resume")
    try:
        return _resume_locked(args, devices, on_step, run_dir, cfg_path)
    finally:
        lock.close()


def _resume_locked(args, devices, on_step, run_dir, cfg_path) -> int:
    try:
        ckpt = load_checkpoint(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--resume: {e}") from None
    config = _read_config(cfg_path)
    missing = [k for k in _STATE_KEYS if k not in ckpt.state]
    if missing:
        raise UsageError(f"--resume: {ckpt.path}: incomplete loop state (no "
                         f"{', '.join(map(repr, missing))})")
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
    # the checkpoint holds fp32 weights whatever the precision, so it may change on resume
    config["precision"] = args.precision or config.get("precision", "fp32")
    if config["precision"] != "fp32" and not all(d.startswith("cuda") for d in devices):
        raise UsageError(f"--resume: the run trained in {config['precision']}, which needs the "
                         "GPU; pass --precision fp32 to continue it on the CPU")
    net = Net(spec, split_columns=split, devices=devices, seed=config["seed"],
              precision=config["precision"])
    _load_weights(net, ckpt)
    state = ckpt.state
    if state.get("status") == "finished" and state["epoch"] >= learning["epochs"]:
        print(f"{PROG}: the run in {run_dir} already finished {_plural(state['epoch'], 'epoch')} "
              "(raise --epochs to continue)")
        return 0
    state["status"] = "running"
    if _world() is None or _world().is_main:  # rank 0 alone writes
        atomic_write_text(cfg_path, json.dumps(config, indent=2) + "\n")
    return _train(net, spec, ds, config, run_dir, state=state, args=args,
                  workers=args.workers if args.workers is not None else config.get("workers"),
                  on_step=on_step)


def _train(net, spec, ds, config, run_dir: Path, *, state, args, workers, on_step) -> int:
    from .data import BatchLoader, WorkerError
    from .trainer import DIVERGED, INTERRUPTED, WRITE_FAILED

    learning, prep = spec.learning, spec.data
    seed = config["seed"]
    world = _world()
    main_rank = world is None or world.is_main
    log_file = None  # ranks other than 0 write nothing and print nothing
    if main_rank:
        try:
            log_file = open_append(run_dir / "train.log")
        except OSError as e:
            raise UsageError(f"{run_dir / 'train.log'}: cannot write ({e.strerror or e})") from None

    def log(line: str) -> None:
        from tqdm import tqdm

        if log_file is None:
            return
        tqdm.write(line)
        log_file.write(line + "\n")
        log_file.flush()

    Loader, shard = BatchLoader, {}
    if world is not None:  # [dist] every rank its slice of each global batch
        from .distributed import ShardedBatchLoader as Loader

        shard = {"rank": world.rank, "world_size": world.size}

    train_split, val_split = ds.split("train"), ds.split("val")
    try:
        loader = Loader(train_split, batch_size=learning["batch_size"], crop=prep["crop"],
                        mean=ds.mean, pca=ds.pca, train=True, flip=prep["flip"],
                        lighting=prep["lighting"], scale=prep["scale"], seed=seed,
                        workers=workers, **shard)
    except ValueError as e:
        if log_file is not None:
            log_file.close()
        raise UsageError(str(e)) from None
    val_loader = None
    if val_split is not None and len(val_split):
        val_loader = Loader(val_split, batch_size=learning["batch_size"], crop=prep["crop"],
                            mean=ds.mean, train=False, flip=False, lighting=0.0,
                            scale=prep["scale"], seed=seed, workers=0, **shard)
    info = {"classes": config["classes"], "class_names": config["class_names"],
            "data": config["data"], "seed": seed, "model": spec.name,
            "precision": config.get("precision", "fp32")}
    common = dict(state=state, extra={"mean": ds.mean}, info=info, log=log, on_step=on_step,
                  checkpoint_steps=args.checkpoint_steps,
                  checkpoint_seconds=args.checkpoint_seconds, log_steps=args.log_steps,
                  log_seconds=args.log_seconds, cuda_graph=args.cuda_graph)
    try:
        if world is None:
            trainer = Trainer(net, learning, loader, val_loader, run_dir=run_dir, seed=seed,
                              **common)
        else:
            from .distributed import DistributedTrainer

            trainer = DistributedTrainer(net, learning, loader, val_loader, world=world,
                                         run_dir=run_dir if main_rank else None, seed=seed,
                                         progress=main_rank, **common)
    except OSError as e:
        for f in (loader, val_loader, log_file):
            if f is not None:
                f.close()
        raise UsageError(f"{e.filename or run_dir}: cannot write ({e.strerror or e})") from None
    if state is None:
        log(f"{spec.name}: {net.num_params:,} parameters, {len(train_split)} training and "
            f"{len(val_split) if val_split is not None else 0} validation images, "
            f"{ds.num_classes} classes ({ds.format}: {config['data']})")
        log(f"devices {', '.join(net.devices)}"
            + (" (columns split)" if net.split else "")
            + f"; {describe_batch(learning['batch_size'], world)}, lr {learning['lr']:g}, momentum "
              f"{learning['momentum']:g}, weight decay {learning['weight_decay']:g}, "
              f"{_plural(learning['epochs'], 'epoch')}; run directory {run_dir}")
    else:
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, batch {state['batch']} "
            f"(step {state['step']}, lr {state['lr']:.2g})")

    names = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
    previous = {s: signal.getsignal(s) for s in names}

    def on_signal(signum, frame):
        if trainer._stop:                 # a second signal: stop at once
            raise KeyboardInterrupt
        trainer.request_stop(signum)
        log(f"{names[signum]}: stopping after this step and saving a checkpoint "
            "(Ctrl-C again to abort)")

    t0 = time.perf_counter()
    try:
        for s in names:
            signal.signal(s, on_signal)
        try:
            result = trainer.train()
        except WorkerError as e:
            print(f"{PROG}: error: {str(e).splitlines()[0]}; the last checkpoint is "
                  f"{run_dir / CHECKPOINT_NAME}", file=sys.stderr)
            return EXIT_IO
        except OSError as e:
            print(f"{PROG}: error: {e.filename or run_dir}: {e.strerror or e}; the last "
                  f"checkpoint is kept", file=sys.stderr)
            return EXIT_IO
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        trainer.close()
        loader.close()
        if val_loader is not None:
            val_loader.close()
        if log_file is not None:
            log_file.close()
    wall = time.perf_counter() - t0
    if not main_rank:  # the same status as rank 0, nothing printed
        return {DIVERGED: EXIT_DIVERGED, WRITE_FAILED: EXIT_IO,
                INTERRUPTED: EXIT_SIGTERM if trainer.stop_signal == signal.SIGTERM
                else EXIT_SIGINT}.get(result, 0)
    if result == DIVERGED:
        print(f"{PROG}: training diverged; see {run_dir / 'train.log'}", file=sys.stderr)
        return EXIT_DIVERGED
    if result == WRITE_FAILED:
        e = trainer.write_error
        print(f"{PROG}: error: could not write the checkpoint in {run_dir}: "
              f"{e.strerror or e}; the previous checkpoint is kept", file=sys.stderr)
        return EXIT_IO
    if result == INTERRUPTED:
        print(f"continue with: {PROG} --resume {run_dir}")
        return EXIT_SIGTERM if trainer.stop_signal == signal.SIGTERM else EXIT_SIGINT
    _report(trainer, run_dir, wall, ds.num_classes, config)
    return 0


def _report(trainer, run_dir, wall, classes, config) -> None:
    h = trainer.history[-1] if trainer.history else None
    st = trainer.state
    print(f"done: {_plural(st['epoch'], 'epoch')}, {_plural(st['step'], 'step')} in {wall:.0f} s")
    if h and h["val_top1"] is not None:
        print(f"validation: top-1 error {100 * h['val_top1']:.1f}% (chance "
              f"{100 * (1 - 1 / classes):.0f}%)"
              + (f", top-5 error {100 * h['val_top5']:.1f}%" if classes > 5 else ""))
    elif h:
        print(f"training: top-1 error {100 * h['train_top1']:.1f}% (no validation split)")
    conv = trainer.net.spec.first_conv()
    print(f"run directory: {run_dir}")
    print(f"  metrics:     {run_dir / 'metrics.jsonl'} (epochs), {run_dir / 'steps.jsonl'} (steps)")
    print(f"  pictures:    {run_dir / 'curves.png'}"
          + (f", {run_dir / (conv.name + '_filters.png')}" if conv else ""))
    print(f"  checkpoint:  {run_dir / CHECKPOINT_NAME}"
          + (f" (best: {run_dir / BEST_NAME})" if (run_dir / BEST_NAME).exists() else ""))
    print(f"evaluate with ten views: python -m alexnet_ext.evaluate {run_dir} --data "
          f"{config['data']} --views 10")


def _world():
    """[dist] This rank's World under torchrun, else None (alexnet_ext.distributed)."""
    from .distributed import current

    return current()


def describe_batch(batch: int, world) -> str:
    """[dist] The batch semantics as printed at the start of a run."""
    from .distributed import describe_batch as describe

    return describe(batch, world)


if __name__ == "__main__":
    sys.exit(main())
