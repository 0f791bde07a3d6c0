"""The op fuzzer's valid calls and its option mutations (used by tests/fuzz_driver.py).

make_call(rng, A) draws a valid call of a random public op of alexnet_ext.ops on small random
geometry, with the options added on top of the plain calls drawn too: ``layout`` ("NCHW" or
"NHWC", arrays shaped to match) of the conv, pool and response-norm ops, filter_acts'
``activation``, img_acts' ``relu_mask``, the fused ReLU backwards (``relu=``, ``relu_y=``,
``relu_mask=``) and the result dtypes (``out_dtype=``, ``grad_x_dtype=``; float32 only, the CPU
has no bfloat16 result). bad_option(rng, key, value) is a mutation of one of those options.
"""
import ml_dtypes
import numpy as np

from alexnet_ext import ops

BF16 = np.dtype(ml_dtypes.bfloat16)
LAYOUTS = ("NCHW", "NHWC")
# valid result dtypes on the host (bfloat16 results are GPU only: a mutation)
F32_DTYPES = (None, np.float32, np.dtype(np.float32), "float32")
OPTION_KEYS = {"layout", "activation", "out_dtype", "grad_x_dtype", "relu"}
BAD_LAYOUTS = ("nchw", "nhwc", "NHW", "", "CHWN", "NCWH", "NCHW ", "NHWC\0", None, 0, 1.5, True,
               b"NHWC", ["NCHW"], ("NHWC",), np.str_("NCHW"))
BAD_ACTIVATIONS = ("Relu", "RELU", "relu ", "sigmoid", "", "none", "None", 0, 1, True, False, 1.5,
                   b"relu", ["relu"], ("relu",), np.str_("relu"), np.array("relu"),
                   np.array(["relu", "relu"]))
class _Opaque:
    """An object of no dtype meaning (its repr stable across processes, unlike object()'s)."""

    def __repr__(self):
        return "<opaque>"


BAD_DTYPES = (np.float64, np.float16, "float16", "float64", np.int32, np.uint8, np.bool_, ">f4",
              ml_dtypes.bfloat16, BF16, "bfloat16", "x", 1.5, 0, True, [np.float32],
              (np.float32,), _Opaque(), np.zeros(2, np.float32), "f4,f4")
BAD_BOOLS = (1, 0, 1.0, "True", "", None, [True], np.array([True, False]), np.bool_(True),
             np.int32(1), 2**64)


def pick(rng, seq):
    """A random element of a sequence of mixed types (rng.choice wants one dtype)."""
    return seq[int(rng.integers(len(seq)))]


def lay(shape, layout):
    """An (N, C, H, W)-ordered 4-tuple (also filters' (F, C/g, kh, kw)) in ``layout``'s order."""
    a, b, c, d = shape
    return (a, c, d, b) if layout == "NHWC" else tuple(shape)


def bad_option(rng, key, v):
    """A mutation of option ``key`` (currently ``v``: None when absent, or an earlier mutation)."""
    if key == "layout":
        if rng.integers(2):  # the other valid layout: arrays shaped for one read as the other
            return "NCHW" if isinstance(v, str) and v == "NHWC" else "NHWC"
        return pick(rng, BAD_LAYOUTS)
    if key == "activation":
        return pick(rng, BAD_ACTIVATIONS)
    if key == "relu":
        return pick(rng, BAD_BOOLS + ((not v,) if isinstance(v, bool) else ()))
    return pick(rng, BAD_DTYPES)


def _conv_geo(rng):
    n, g = int(rng.integers(1, 3)), int(rng.choice([1, 1, 2]))
    cg, fg = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    h, w = (int(v) for v in rng.integers(1, 8, 2))
    ph, pw = (int(v) for v in rng.integers(0, 3, 2))
    kh, kw = int(rng.integers(1, h + 2 * ph + 1)), int(rng.integers(1, w + 2 * pw + 1))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    ceil = bool(rng.integers(2))
    ho = ops.conv_output_size(h, kh, sh, ph, ceil)
    wo = ops.conv_output_size(w, kw, sw, pw, ceil)
    return n, g * cg, h, w, g * fg, kh, kw, (sh, sw), (ph, pw), g, ceil, ho, wo


def _pool_geo(rng):
    n, c = (int(v) for v in rng.integers(1, 3, 2))
    h, w = (int(v) for v in rng.integers(1, 8, 2))
    kh, kw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    ceil = bool(rng.integers(2))
    ho = ops.pool_output_size(h, kh, sh, ph, ceil)
    wo = ops.pool_output_size(w, kw, sw, pw, ceil)
    return n, c, h, w, (kh, kw), (sh, sw), (ph, pw), ceil, ho, wo


def _layout(rng, kw_):
    """A random layout, passed in kw_ (NCHW sometimes left to the default)."""
    layout = pick(rng, LAYOUTS)
    if layout == "NHWC" or rng.integers(2):
        kw_["layout"] = layout
    return layout


def _maybe_dtype(rng, kw_, key):
    if rng.integers(2):
        kw_[key] = pick(rng, F32_DTYPES)


def _switches(rng, A, shape, h, w):
    return A.new(shape, pick(rng, [np.int32, np.int64]), fill=rng.integers(0, h * w, shape))


def make_call(rng, A):
    """(op name, args, kwargs, writes): a valid call; `writes` names the arguments it may write."""
    f32 = A.new
    name = pick(rng, OPS)
    if name in ("filter_acts", "img_acts", "weight_acts"):
        n, c, h, w, f, kh, kw, s, p, g, ceil, ho, wo = _conv_geo(rng)
        kw_ = dict(stride=s, padding=p, groups=g, ceil_mode=ceil)
        layout, L = _layout(rng, kw_), lay
        images, hid, filters = ((n, c, h, w), (n, f, ho, wo), (f, c // g, kh, kw))
        out_shape = {"filter_acts": hid, "img_acts": images, "weight_acts": filters}[name]
        if rng.integers(2):
            kw_.update(out=f32(L(out_shape, layout)), scale_targets=float(rng.choice([0.0, 0.5])))
        if name == "filter_acts":
            if rng.integers(2):
                kw_["bias"] = f32((f,))
            if rng.integers(2):
                kw_["activation"] = pick(rng, [None, "relu"])
            _maybe_dtype(rng, kw_, "out_dtype")
            return name, [f32(L(images, layout)), f32(L(filters, layout))], kw_, ("out",)
        if name == "img_acts":
            kw_["image_size"] = (h, w)
            if rng.integers(2):
                kw_["relu_mask"] = f32(L(images, layout))
            _maybe_dtype(rng, kw_, "out_dtype")
            return name, [f32(L(hid, layout)), f32(L(filters, layout))], kw_, ("out",)
        kw_["filter_size"] = (kh, kw)
        return name, [f32(L(images, layout)), f32(L(hid, layout))], kw_, ("out",)
    if name == "conv_bias_grad":
        kw_ = {}
        _layout(rng, kw_)
        return name, [f32(tuple(int(v) for v in rng.integers(1, 4, 4)))], kw_, ()
    if name in ("max_pool", "avg_pool", "max_pool_undo", "avg_pool_undo"):
        n, c, h, w, k, s, p, ceil, ho, wo = _pool_geo(rng)
        kw_ = dict(size=k, stride=s, padding=p)
        layout = pick(rng, LAYOUTS)
        image, pooled = lay((n, c, h, w), layout), lay((n, c, ho, wo), layout)
        opts = {"layout": layout} if layout == "NHWC" or rng.integers(2) else {}
        if name == "max_pool_undo":
            if rng.integers(2):
                opts["relu_y"] = f32(image)
            return name, [f32(pooled), _switches(rng, A, pooled, h, w)], dict(
                opts, image_size=(h, w)), ()
        kw_.update(opts, ceil_mode=ceil)
        if name == "avg_pool_undo":
            return name, [f32(pooled)], dict(kw_, image_size=(h, w)), ()
        return name, [f32(image)], kw_, ()
    if name in ("response_norm", "response_norm_undo"):
        shape = tuple(int(v) for v in rng.integers(1, 5, 4))
        kw_ = dict(size=int(rng.integers(1, 7)), k=2.0, alpha=1e-3, beta=0.75)
        _layout(rng, kw_)
        if name == "response_norm":
            return name, [f32(shape)], kw_, ()
        x = f32(shape)
        y, d = ops.response_norm(x, **kw_)
        yy, dd = f32(shape, fill=y), f32(shape, fill=d)
        if rng.integers(2):
            kw_["relu"] = bool(rng.integers(2))
        return name, [f32(shape), x, yy, dd], kw_, ()
    if name in ("response_norm_max_pool", "response_norm_max_pool_undo"):
        n, c, h, w, k, s, p, ceil, ho, wo = _pool_geo(rng)
        kw_ = dict(size=int(rng.integers(1, 7)), k=2.0, alpha=1e-3, beta=0.75)
        layout = _layout(rng, kw_)
        image, pooled = lay((n, c, h, w), layout), lay((n, c, ho, wo), layout)
        if name == "response_norm_max_pool":
            return name, [f32(image)], dict(kw_, pool_size=k, pool_stride=s, pool_padding=p,
                                            ceil_mode=ceil), ()
        if rng.integers(2):
            kw_["relu"] = bool(rng.integers(2))
        d = f32(image, fill=2.0 + rng.random(image))
        return name, [f32(pooled), _switches(rng, A, pooled, h, w), f32(image), d], kw_, ()
    shape = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(1, 4))))
    if name in ("relu", "add"):
        args = [f32(shape)] if name == "relu" else [f32(shape), f32(shape)]
        return name, args, dict(out=f32(shape)) if rng.integers(2) else {}, ("out",)
    if name == "relu_undo":
        return name, [f32(shape), f32(shape)], {}, ()
    if name == "dropout":
        kw_ = dict(p=float(rng.choice([0.0, 0.5, 0.9])), seed=int(rng.integers(0, 2**63)),
                   offset=int(rng.integers(0, 9)))
        if rng.integers(2):
            kw_["mask_out"] = A.new(shape, np.uint8)
        size = int(np.prod(shape))
        if rng.integers(2):
            kw_["block"] = (size, size + int(rng.integers(0, 3)), 0)
        return name, [f32(shape)], kw_, ("out", "mask_out")
    if name == "dropout_undo":
        kw_ = dict(p=0.5)
        if rng.integers(2):
            kw_["relu_mask"] = f32(shape)
        return name, [f32(shape), A.new(shape, np.uint8)], kw_, ("out",)
    if name == "normalize_batch":
        b, c, s, t = (int(v) for v in rng.integers(1, 4, 4))
        h, w = s + int(rng.integers(0, 3)), t + int(rng.integers(0, 3))
        kw_ = dict(scale=0.5)
        if rng.integers(2):
            kw_["offsets"] = A.new((b, 3), np.int32, fill=np.stack(
                [rng.integers(0, h - s + 1, b), rng.integers(0, w - t + 1, b), rng.integers(0, 2, b)], 1))
        if rng.integers(2):
            kw_["shift"] = f32((b, c))
        if rng.integers(2):
            kw_["out"] = f32((b, c, s, t))
        _maybe_dtype(rng, kw_, "out_dtype")
        return name, [A.new((b, c, s, t), np.uint8), f32((c, h, w))], kw_, ("out",)
    n, k = (int(v) for v in rng.integers(1, 6, 2))
    labels = A.new((n,), pick(rng, [np.int32, np.int64]), fill=rng.integers(0, k, n))
    if name == "softmax_log_loss":
        return name, [f32((n, k)), labels], {}, ("out",)
    if name == "softmax_log_loss_undo":
        probs = f32((n, k), fill=rng.random((n, k)))
        kw_ = dict(scale=1.0)
        if rng.integers(3) == 0:
            kw_["out"] = f32((n, k))
        _maybe_dtype(rng, kw_, "out_dtype")
        return name, [probs, labels], kw_, ("out",)
    if name == "top_k_errors":
        return name, [f32((n, k)), labels], dict(ks=(1, int(rng.integers(1, 7)))), ()
    if name == "fc":
        d = int(rng.integers(1, 6))
        kw_ = {}
        if rng.integers(3) == 0:
            kw_["out"] = f32((n, k))
        _maybe_dtype(rng, kw_, "out_dtype")
        return name, [f32((n, d)), f32((k, d)), f32((k,))], kw_, ("out",)
    if name == "fc_undo":
        d = int(rng.integers(1, 6))
        kw_ = {}
        _maybe_dtype(rng, kw_, "grad_x_dtype")
        return name, [f32((n, k)), f32((n, d)), f32((k, d))], kw_, ("grad_x_out", "grad_w_out",
                                                                     "grad_b_out")
    if name == "sgd_update":
        return name, [f32(shape), f32(shape), f32(shape)], dict(lr=0.01), (0, 2)
    if name == "sgd_update_many":
        shapes = [shape, (int(rng.integers(1, 5)),)]
        return name, [[f32(s) for s in shapes], [f32(s) for s in shapes],
                      [f32(s) for s in shapes]], dict(lr=0.01), (0, 2)
    if name == "philox4x32_10":
        return name, [tuple(int(v) for v in rng.integers(0, 2**32, 4, dtype=np.uint64)),
                      tuple(int(v) for v in rng.integers(0, 2**32, 2, dtype=np.uint64))], {}, ()
    if name in ("conv_output_size", "pool_output_size"):
        size = int(rng.integers(1, 9))
        return name, [size, int(rng.integers(1, min(size, 3) + 1)), int(rng.integers(1, 4))], {}, ()
    return "switch_dtype", [int(rng.integers(1, 9)), int(rng.integers(1, 9))], {}, ()


OPS = ["filter_acts", "img_acts", "weight_acts", "conv_bias_grad", "max_pool", "max_pool_undo",
       "avg_pool", "avg_pool_undo", "response_norm", "response_norm_undo", "relu", "relu_undo",
       "add", "dropout", "dropout_undo", "softmax_log_loss", "softmax_log_loss_undo",
       "top_k_errors", "fc", "fc_undo", "sgd_update", "sgd_update_many", "philox4x32_10",
       "conv_output_size", "pool_output_size", "switch_dtype", "normalize_batch",
       "response_norm_max_pool", "response_norm_max_pool_undo"]
