"""Shared by test_sgd_update.py and test_sgd_update_cuda.py: the SGD update references, cases and
data makers."""


SHAPES = {
    "bias": (7,),
    "fc_weights": (33, 65),
    "conv_filters": (12, 3, 11, 11),
    "big_parallel": (256, 1000),
}


def check_bf16_copy(rng, put, get):
    """sgd_update(copy_bf16=) and sgd_update_many(copies_bf16=) on arrays moved by ``put`` (the
    identity on the CPU, to_device on the GPU) and read back by ``get``: w and velocity are
    bit for bit what the call without a copy gives, and the copy is the new w rounded to bf16 as
    ml_dtypes rounds it (an independent implementation of round-to-nearest-even). The weights
    are drawn so that every binade and sign and exact ties of the bf16 grid occur."""
    import ml_dtypes
    import numpy as np

    from alexnet_ext import ops

    bf16 = np.dtype(ml_dtypes.bfloat16)
    shapes = [(3, 5, 7), (1,), (1000,)]
    ws = [rng.normal(0, 0.5, s).astype(np.float32) for s in shapes]
    ws[2][:200] = (ws[2][:200].view(np.uint32) & 0xffff0000 | 0x8000).view(np.float32)  # ties
    gs = [np.zeros_like(w) if i == 2 else rng.standard_normal(w.shape).astype(np.float32)
          for i, w in enumerate(ws)]  # zero grad, no decay, no velocity: the ties stay ties
    vs = [np.zeros_like(w) if i == 2 else rng.normal(0, 0.05, w.shape).astype(np.float32)
          for i, w in enumerate(ws)]
    hyper = [dict(lr=0.01), dict(lr=0.05, momentum=0.5, weight_decay=0.01),
             dict(lr=0.01, weight_decay=0.0)]
    # one call per tensor, with and without the copy
    for w, g, v, h in zip(ws, gs, vs, hyper):
        plain_w, plain_v, dw, dv = put(w), put(v), put(w), put(v)
        copy = put(np.full(w.shape, np.nan, bf16))
        ops.sgd_update(plain_w, put(g), plain_v, **h)
        ops.sgd_update(dw, put(g), dv, copy_bf16=copy, **h)
        new_w = get(dw)
        np.testing.assert_array_equal(new_w, get(plain_w))
        np.testing.assert_array_equal(get(dv), get(plain_v))
        np.testing.assert_array_equal(get(copy).view(np.uint16), new_w.astype(bf16).view(np.uint16))
    # the many form: a copy for some tensors, None for others
    dws, dvs = [put(w) for w in ws], [put(v) for v in vs]
    copies = [put(np.zeros(ws[0].shape, bf16)), None, put(np.zeros(ws[2].shape, bf16))]
    ops.sgd_update_many(dws, [put(g) for g in gs], dvs, lr=0.01, momentum=0.9,
                        weight_decay=[5e-4, 0.0, 0.0], copies_bf16=copies)
    for dw, c in zip(dws, copies):
        if c is not None:
            np.testing.assert_array_equal(get(c).view(np.uint16),
                                          get(dw).astype(bf16).view(np.uint16))
    # a tie stays a tie (zero update), so this checks ties-to-even on exact halves
    assert np.any(get(dws[2])[:200].view(np.uint32) & 0xffff == 0x8000)
