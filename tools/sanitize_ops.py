"""Run every CUDA op once, forward and backward, on small odd shapes: the workload for
compute-sanitizer (memcheck, racecheck, synccheck), which is far too slow for the whole suite.

    compute-sanitizer --tool memcheck --error-exitcode 1 python tools/sanitize_ops.py
"""
import sys

import numpy as np

import alexnet_ext
from alexnet_ext import _core, cuda, ops


def main() -> int:
    if not alexnet_ext.cuda_available():
        print("no GPU:", alexnet_ext.cuda_status()["reason"])
        return 2
    rng = np.random.default_rng(0)
    f32 = lambda *s: cuda.to_device(rng.standard_normal(s).astype(np.float32))
    conv_kernels = [1, 2] if hasattr(_core.cuda, "set_conv_kernel") else [None]
    for version in conv_kernels:
        if version is not None:
            _core.cuda.set_conv_kernel(version)
        for (n, c, h, w, f, k, s, p, g, ceil) in [(3, 3, 23, 19, 8, 11, 4, 2, 1, False),
                                                   (2, 6, 9, 9, 10, 5, 1, 2, 2, False),
                                                   (1, 7, 5, 6, 5, 3, 2, 1, 1, True),
                                                   (2, 4, 4, 4, 3, 1, 1, 0, 1, False)]:
            x, wt = f32(n, c, h, w), f32(f, c // g, k, k)
            kw = dict(stride=s, padding=p, groups=g, ceil_mode=ceil)
            y = ops.filter_acts(x, wt, bias=f32(f), **kw)
            gy = f32(*y.shape)
            ops.img_acts(gy, wt, image_size=(h, w), **kw)
            ops.weight_acts(x, gy, filter_size=k, **kw)
            ops.conv_bias_grad(gy)
    # the tensor-core kernels (version 3) through precision=: tf32 on float32, bf16 operands
    # (split-K and the few-channel imgActs path come with the first and last shapes)
    for (n, c, h, w, f, k, s, p, g, ceil) in [(3, 3, 23, 19, 8, 11, 4, 2, 1, False),
                                               (2, 16, 9, 9, 24, 3, 1, 1, 2, False),
                                               (1, 5, 6, 7, 130, 3, 1, 1, 1, True)]:
        kw = dict(stride=s, padding=p, groups=g, ceil_mode=ceil)
        x, wt = f32(n, c, h, w), f32(f, c // g, k, k)
        for prec, cast in (("tf32", lambda a: a), ("bf16", lambda a: ops.cast(a, cuda.bfloat16))):
            xs, ws = cast(x), cast(wt)
            y = ops.filter_acts(xs, ws, bias=f32(f), precision=prec, **kw)
            gy = cast(f32(*y.shape))
            ops.img_acts(gy, ws, image_size=(h, w), precision=prec, **kw)
            ops.weight_acts(xs, gy, filter_size=k, precision=prec, **kw)
    x = f32(3, 7, 11, 13)
    y, d = ops.response_norm(x)
    ops.response_norm_undo(f32(*x.shape), x, y, d)
    y, sw = ops.max_pool(x, size=3, stride=2, ceil_mode=True)
    ops.max_pool_undo(f32(*y.shape), sw, image_size=(11, 13))
    y = ops.avg_pool(x, size=3, stride=2, padding=1)
    ops.avg_pool_undo(f32(*y.shape), image_size=(11, 13), size=3, stride=2, padding=1)
    r = ops.relu(x)
    ops.relu_undo(f32(*x.shape), r)
    y, m = ops.dropout(x, p=0.5, seed=3)
    ops.dropout_undo(f32(*x.shape), m, p=0.5)
    a, wf, b = f32(5, 37), f32(11, 37), f32(11)
    if hasattr(_core.cuda, "fc_forward") or hasattr(_core.cuda, "fc"):
        yf = ops.fc(a, wf, b)
        ops.fc_undo(f32(*yf.shape), a, wf)
    labels = cuda.to_device(rng.integers(0, 11, 5).astype(np.int64))
    loss, probs = ops.softmax_log_loss(f32(5, 11), labels)
    ops.softmax_log_loss_undo(probs, labels)
    ops.top_k_errors(probs, labels, ks=(1, 5))
    wv, gv, vv = f32(64, 33), f32(64, 33), f32(64, 33)
    ops.sgd_update(wv, gv, vv, lr=0.01)
    ops.sgd_update_many([wv, f32(7)], [gv, f32(7)], [vv, f32(7)], lr=0.01)
    ops.sgd_update(wv, gv, vv, lr=0.01, copy_bf16=cuda.empty(wv.shape, cuda.bfloat16))
    ops.cast(ops.cast(f32(1029), cuda.bfloat16), np.float32)
    ops.add(x, f32(*x.shape), out=x)
    ops.add(f32(1027), f32(1027))
    # copies: within the device by every route, and between GPUs when there are two
    a = f32(5, 129)
    for route in ("auto", "peer", "host"):
        cuda.copy(cuda.empty(a.shape), a, route=route)
    if cuda.device_count() > 1:
        for route in ("auto", "host"):
            cuda.copy(cuda.empty(a.shape, device=1), a, route=route)
    # the data feed: copy stream, events, pinned host buffers
    from alexnet_ext.data.device_feed import DeviceFeed
    host = [(rng.standard_normal((4, 3, 8, 8)).astype(np.float32), np.arange(4)) for _ in range(3)]
    with DeviceFeed(0, pin=True) as feed:
        for xb, _ in feed(iter(host)):
            ops.relu(xb)
    # a training step captured as a CUDA graph and replayed (Net.step_graph)
    from alexnet_ext.nn import Net, load_model
    # in fp32 and in bf16 (bf16 activations, the fused conv+ReLU epilogue and the folded ReLU
    # undos, the SGD step writing the bf16 weight copies)
    for model, precision in (("lenet5", "fp32"), ("lenet5", "bf16"), ("alexnet-small", "bf16")):
        spec = load_model(model)
        net = Net(spec, devices=["cuda"], seed=0, precision=precision)
        step = net.step_graph((4, *spec.input_shape))
        xb = rng.standard_normal((4, *spec.input_shape)).astype(np.float32)
        yb = rng.integers(0, spec.classes, 4)
        for i in range(3):  # warm-up, capture, replay
            float(step.run(xb, yb, step=i, seed=1, lr=0.01))
    cuda.synchronize()
    print("sanitize_ops: every op ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
