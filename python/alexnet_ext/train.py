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

from ._cli import UsageError, open_data, run_cli
from .nn import ModelError, Net, format_summary, load_checkpoint, load_model, parse_model
from .nn.checkpoint import CHECKPOINT_NAME, atomic_write_text
from .trainer import Trainer, evaluate_loader  # noqa: F401  (evaluate_loader: public here too)

__all__ = ["main", "build_parser", "Trainer", "evaluate_loader"]

PROG = "python -m alexnet_ext.train"
DEFAULT_MODEL = "alexnet-small"


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train an AlexNet-style network with the paper's SGD (momentum 0.9, weight "
                    "decay 5e-4, lr divided by 10 when validation error stops improving). With "
                    "no arguments: alexnet-small on a generated data set, on the GPU when one "
                    "is usable (else on the CPU, in a few minutes).",
        epilog="Exit status: 0 done, 1 training diverged (non-finite loss), 2 bad input "
               "(data, model, options), 130 interrupted (Ctrl-C; the checkpoint is saved, "
               "continue with --resume RUN_DIR), 3 under torchrun: another rank died or timed "
               "out. Under torchrun (python -m torch.distributed.run) every rank trains on its "
               "share of each global batch (see README, Many GPUs).")
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
                        "(--epochs may raise the epoch count, --workers/--device may change, and "
                        "so may the number of torchrun ranks)")
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
        device = "cuda" if status["available"] and not status.get("emulated") else "cpu"
    if device == "cpu":
        if args.gpus not in (None, 1):
            raise UsageError("--gpus needs --device cuda")
        return ["cpu"]
    if not cuda_available():
        raise UsageError(f"--device cuda: no usable GPU ({cuda_status()['reason']}); "
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
    if not (args.dist_timeout > 0 and math.isfinite(args.dist_timeout)):
        raise UsageError(f"--dist-timeout: expected a positive number, got {args.dist_timeout}")


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
        from . import distributed  # [dist] no torch import unless launched by torchrun

        if distributed.launched() and not args.summary:
            return distributed.run_rank(args, lambda: _run(args, on_step=on_step), prog=PROG)
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
    world = _world()
    if world is not None:  # [dist] rank 0's directory name (the clocks may differ)
        run_dir = Path(world.broadcast_object(str(run_dir)))
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UsageError(f"--out {run_dir}: already holds a run; continue it with --resume "
                         f"{run_dir} or choose another --out")
    config = {"model": spec.name, "model_source": str(spec.path), "data": str(data_path.resolve()),
              "seed": seed, "devices": devices, "split_columns": split,
              "workers": args.workers, "classes": ds.num_classes,
              "class_names": list(ds.class_names), "learning": spec.learning,
              "data_prep": spec.data, "argv": list(args.argv),
              "world_size": world.size if world is not None else 1}
    if world is None or world.is_main:  # [dist] rank 0 alone writes the run directory
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
    if _world() is None or _world().is_main:  # [dist] rank 0 alone writes
        atomic_write_text(cfg_path, json.dumps(config, indent=2) + "\n")
    return _train(net, spec, ds, config, run_dir, state=state,
                  workers=args.workers if args.workers is not None else config.get("workers"),
                  on_step=on_step)


def _train(net, spec, ds, config, run_dir: Path, *, state, workers, on_step) -> int:
    from .data import BatchLoader

    learning, prep = spec.learning, spec.data
    seed = config["seed"]
    world = _world()
    main_rank = world is None or world.is_main
    # [dist] ranks other than 0 write nothing and print nothing
    log_file = open(run_dir / "train.log", "a", encoding="utf-8") if main_rank else None

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
            "data": config["data"], "seed": seed, "model": spec.name}
    if world is None:
        trainer = Trainer(net, learning, loader, val_loader, run_dir=run_dir, seed=seed,
                          state=state, extra={"mean": ds.mean}, info=info, log=log,
                          on_step=on_step)
    else:  # [dist]
        from .distributed import DistributedTrainer

        trainer = DistributedTrainer(net, learning, loader, val_loader, world=world,
                                     run_dir=run_dir if main_rank else None, seed=seed,
                                     state=state, extra={"mean": ds.mean}, info=info, log=log,
                                     on_step=on_step, progress=main_rank)
    if state is None:
        log(f"{spec.name}: {net.num_params:,} parameters, {len(train_split)} training and "
            f"{len(val_split) if val_split is not None else 0} validation images, "
            f"{ds.num_classes} classes ({ds.format}: {config['data']})")
        log(f"devices {', '.join(net.devices)}"
            + (" (columns split)" if net.split else "")
            + f"; {describe_batch(learning['batch_size'], world)}, lr {learning['lr']:g}, momentum "
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
        if log_file is not None:
            log_file.close()
    wall = time.perf_counter() - t0
    if not main_rank:  # [dist] the same status as rank 0, nothing printed
        return {"diverged": 1, "interrupted": 130}.get(result, 0)
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
