"""A float64 reference of a whole model, written here with NumPy (einsum and sliding windows),
never calling the package's kernels: the net tests check a net's float32 loss and gradients
against it (forward value, and central differences of the reference for the gradients).

A new layer type adds its branch to :func:`ref_forward`.
"""
import numpy as np


def ref_conv(x, w, b, stride=1, pad=0, groups=1):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    f, cg, kh, kw = w.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]                     # (N, C, Ho, Wo, kh, kw)
    fg = f // groups
    outs = [np.einsum("nchwij,fcij->nfhw", win[:, g * cg:(g + 1) * cg], w[g * fg:(g + 1) * fg])
            for g in range(groups)]
    return np.concatenate(outs, axis=1) + b[None, :, None, None]


def ref_lrn(x, size, k, alpha, beta, blocks=1):
    n, c, h, w = x.shape
    cb = c // blocks
    out = np.empty_like(x)
    for blk in range(blocks):
        a = x[:, blk * cb:(blk + 1) * cb]
        sq = a * a
        for i in range(cb):
            lo, hi = max(0, i - size // 2), min(cb - 1, i + size // 2)
            out[:, blk * cb + i] = a[:, i] / (k + alpha * sq[:, lo:hi + 1].sum(1)) ** beta
    return out


def ref_pool(x, size, stride, mode):
    win = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]
    return win.max(axis=(4, 5)) if mode == "max" else win.mean(axis=(4, 5))


def ref_fc(x, w, b):
    return x.reshape(len(x), -1) @ w.T + b


def ref_loss(logits, labels):
    m = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(1)) + m[:, 0]
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def ref_forward(spec, params, x, labels, masks=None):
    """Run a merged model spec in float64: every layer type except pool padding/ceil."""
    t = {"data": x.astype(np.float64)}
    for L in spec.layers:
        a = L.attrs
        xs = [t[i] for i in L.inputs]
        if L.type == "conv":
            w, b = params[f"{L.name}.weight"], params[f"{L.name}.bias"]
            t[L.name] = ref_conv(np.concatenate(xs, axis=1), w, b, a["stride"][0],
                                 a["padding"][0], a["groups"])
        elif L.type == "fc":
            flat = np.concatenate([v.reshape(len(v), -1) for v in xs], axis=1)
            t[L.name] = ref_fc(flat, params[f"{L.name}.weight"], params[f"{L.name}.bias"])
        elif L.type == "relu":
            t[L.name] = np.maximum(xs[0], 0)
        elif L.type == "lrn":
            assert not a["alpha_over_size"]
            t[L.name] = ref_lrn(xs[0], a["size"], a["k"], a["alpha"], a["beta"], L.blocks)
        elif L.type == "pool":
            assert a["padding"] == 0 and not a["ceil_mode"]
            t[L.name] = ref_pool(xs[0], a["size"], a["stride"], a["mode"])
        elif L.type == "dropout":
            t[L.name] = xs[0] * masks[L.name] / (1 - a["p"]) if masks else xs[0]
        elif L.type == "softmax":
            return ref_loss(xs[0], labels)
    raise AssertionError("no softmax")
