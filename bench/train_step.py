"""Training-step benchmark: one SGD step (forward, backward, the paper's update) of a whole net,
ours beside the same net in PyTorch, in the same process on the same device.

    python bench/run.py --step --device cuda              # alexnet, batch 128, one GPU
    python bench/run.py --step --device cuda --gpus 2     # ours with a column per GPU
    python bench/run.py --step --model alexnet-small --batch 32      # on the CPU
    python bench/run.py --step --device cuda --precision tf32        # tf32 convolutions
    python bench/run.py --step --device cuda --precision bf16        # bf16 training

Ours: :class:`alexnet_ext.nn.Net` (merged: columns as groups=2; split with --gpus 2), the step
queued with ``wait=False`` and the loss read once at its end, as the training loop does. PyTorch:
the paper's net written with torch.nn (groups=2 where the columns do not meet, LRN per column
with the paper's alpha), SGD with momentum 0.9 and weight decay 5e-4, fp32 with TF32 off and
``cudnn.benchmark=True`` on the GPU (the baseline in ../shared/baselines was measured that way).
Both see the same random batch, already on the device (the data loader is benchmarked by
--data). On one GPU ours runs twice: queued op by op from Python ("eager"), and replayed as one
CUDA graph (``Net.step_graph``, what the training loop does by default; the batch is copied into
the graph's input buffers each step, as there). Each row: median ms per step over --repeat timed runs of --steps steps, and images/s.
With --precision tf32 ours is Net(precision="tf32") (tf32 convolutions, the rest fp32) and
PyTorch runs with TF32 allowed for cuDNN and matmuls (what its TF32 users run: "TF32 eager").
With --precision bf16 ours is Net(precision="bf16") (bf16 activations, fp32 masters; the batch
already bf16 on the device, as the uint8 feed hands it) and PyTorch runs what its bf16 users run:
autocast to bf16 with channels_last tensors, eager and then under torch.compile (the issue's
target is 1.5x the compiled step); the speedup printed is against the faster of the two.

``run(args)`` returns a dict for JSON (``bench/run.py --step``).
"""
from __future__ import annotations

import argparse

import numpy as np

from alexnet_ext import _shapes as S
from alexnet_ext import cuda as C
from alexnet_ext.nn import Net, load_model
from alexnet_ext.nn.device import gpu_index
from timing import median_time  # bench/timing.py (bench/run.py put this folder on sys.path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training-step benchmark (--step)")
    g.add_argument("--model", default="alexnet", help="shipped model name or file (default: alexnet)")
    g.add_argument("--gpus", type=int, default=1, help="1: merged net on GPU 0; 2: a column per GPU")
    g.add_argument("--steps", type=int, default=10, help="steps per timed run (default: 10)")


def _torch_net(spec, torch):
    """The model file's net in torch.nn, for the nets whose layers map one to one (the shipped
    alexnet family): conv (groups), relu, lrn per column, max/avg pool, dropout, fc, softmax."""
    nn, F = torch.nn, torch.nn.functional

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    layers = []
    for L in spec.layers:
        a = L.attrs
        if len(L.inputs) != 1:
            raise ValueError(f"{spec.name}: layer {L.name} reads several tensors; this benchmark "
                             "writes chains of layers in torch.nn only")
        if L.type == "conv":
            cin = spec.shapes[L.inputs[0]][0]
            layers.append(("conv", nn.Conv2d(cin, L.out_shape[0], pair(a["size"]), pair(a["stride"]),
                                             pair(a["padding"]), groups=a.get("groups", 1))))
        elif L.type == "fc":
            layers.append(("fc", nn.Linear(int(np.prod(spec.shapes[L.inputs[0]])), L.out_shape[0])))
        elif L.type == "relu":
            layers.append(("relu", None))
        elif L.type == "lrn":
            alpha = a["alpha"] if a["alpha_over_size"] else a["alpha"] * a["size"]
            layers.append(("lrn", (a["size"], alpha, a["beta"], a["k"], L.blocks)))
        elif L.type == "pool":
            layers.append(("pool", (a["mode"], pair(a["size"]), pair(a["stride"]), pair(a["padding"]),
                                    a["ceil_mode"])))
        elif L.type == "dropout":
            layers.append(("dropout", a["p"]))

    class TorchNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.mods = nn.ModuleList([m for kind, m in layers if kind in ("conv", "fc")])

        def forward(self, x):
            mods = iter(self.mods)
            for kind, arg in layers:
                if kind == "conv":
                    x = next(mods)(x)
                elif kind == "fc":
                    x = next(mods)(torch.flatten(x, 1))
                elif kind == "relu":
                    x = F.relu(x)
                elif kind == "lrn":
                    size, alpha, beta, k, blocks = arg
                    x = torch.cat([F.local_response_norm(h, size, alpha=alpha, beta=beta, k=k)
                                   for h in x.chunk(blocks, dim=1)], dim=1)
                elif kind == "pool":
                    mode, size, stride, pad, ceil = arg
                    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
                    x = pool(x, size, stride, pad, ceil_mode=ceil)
                elif kind == "dropout":
                    x = F.dropout(x, arg, self.training)
            return x

    return TorchNet()


def run(args) -> dict:
    spec = load_model(args.model, classes=S.CLASSES if args.model == "alexnet" else None)
    n = args.batch
    rng = np.random.default_rng(args.seed)
    x = (rng.standard_normal((n,) + spec.input_shape) * 50).astype(np.float32)
    y = rng.integers(0, spec.classes, n).astype(np.int64)
    cuda = args.device == "cuda"
    if cuda:
        devices = [f"cuda:{i}" for i in range(args.gpus)]
        net = Net(spec, seed=0, devices=devices, split_columns=args.gpus > 1,
                  precision=args.precision)
        xs = C.to_device(x, device=gpu_index(net.data.device))
        if net.data.dtype != xs.dtype:      # bf16: what the uint8 feed hands a bf16 net
            from alexnet_ext import ops
            xs = ops.cast(xs, net.data.dtype)
        ys = C.to_device(y, device=gpu_index(net.cost.output.device))

        def sync():
            for d in range(args.gpus):
                C.set_device(d)
                C.synchronize()
            C.set_device(0)
    else:
        net = Net(spec, seed=0)
        xs, ys = x, y

        def sync():
            pass

    learn = spec.learning
    state = {"step": 0}

    def ours():
        loss = net.forward(xs, ys, train=True, step=state["step"], wait=False)
        net.backward()
        net.update(lr=1e-4, momentum=learn.get("momentum", 0.9),
                   weight_decay=learn.get("weight_decay", 5e-4))
        state["step"] += 1
        return float(loss)

    results = {}
    t = median_time(ours, args.repeat, sync, inner=args.steps)
    results["alexnet_ext"] = {"ms": t * 1e3, "img_s": n / t, "devices": net.devices,
                              "split": net.split, "precision": net.precision}
    label = "alexnet_ext " + ("split" if net.split else "merged") + (" eager" if cuda else "")
    print(f"{label:28s} {spec.name:14s} batch {n:4d}"
          f" {t * 1e3:9.2f} ms/step {n / t:10.0f} img/s   ({', '.join(net.devices)})", flush=True)
    if cuda and args.gpus == 1:
        graph = net.step_graph(x.shape, y.dtype)

        def replayed():
            loss = graph.run(xs, ys, step=state["step"], seed=0, lr=1e-4,
                             momentum=learn.get("momentum", 0.9),
                             weight_decay=learn.get("weight_decay", 5e-4))
            state["step"] += 1
            return float(loss)

        replayed()
        replayed()      # the eager warm-up, then the capture: not timed
        tg = median_time(replayed, args.repeat, sync, inner=args.steps)
        results["alexnet_ext_graph"] = {"ms": tg * 1e3, "img_s": n / tg, "vs_eager": t / tg}
        print(f"{'alexnet_ext merged graph':28s} {spec.name:14s} batch {n:4d}"
              f" {tg * 1e3:9.2f} ms/step {n / tg:10.0f} img/s   {t / tg:.2f}x eager", flush=True)
        t = tg          # the speedup below is against what training runs
    if args.no_torch:
        return results
    try:
        import torch
    except ImportError:
        print("# PyTorch not installed: no comparison")
        return results
    dev = "cuda" if cuda else "cpu"
    if cuda and not torch.cuda.is_available():
        print("# PyTorch cannot use a GPU here (a CPU-only build, or the GPU is tools/cuda_emu): "
              "no comparison")
        return results
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    bf16 = args.precision == "bf16"
    tnet = _torch_net(spec, torch).to(dev).train()
    tx, ty = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    if bf16:
        tnet = tnet.to(memory_format=torch.channels_last)
        tx = tx.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(tnet.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step_of(model):
        def theirs():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(tx), ty)
            loss.backward()
            opt.step()
            return loss
        return theirs

    runs = [("torch", step_of(tnet))]
    if bf16:
        runs.append(("torch_compile", step_of(torch.compile(tnet))))
    best = None
    for key, theirs in runs:
        try:
            theirs()
            theirs()       # warm-up (and compilation): not timed
            tt = median_time(theirs, args.repeat, sync, inner=args.steps)
        except Exception as e:   # torch.compile needs a working compiler toolchain
            print(f"# {key}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        results[key] = {"ms": tt * 1e3, "img_s": n / tt, "version": torch.__version__}
        kind = {"tf32": "tf32, cuDNN)", "bf16": "bf16 autocast, NHWC"}.get(
            args.precision, "fp32, cuDNN, TF32 off)" if cuda else "fp32)")
        if bf16:
            kind += ", compiled)" if key == "torch_compile" else ", eager)"
        print(f"{'torch (' + kind:28s} {spec.name:14s} batch {n:4d}"
              f" {tt * 1e3:9.2f} ms/step {n / tt:10.0f} img/s   speedup {tt / t:.2f}x", flush=True)
        best = tt if best is None else min(best, tt)
    if best is not None:
        results["speedup"] = best / t
    return results
