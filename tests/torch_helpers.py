"""Shared helpers of the tests/test_torch_*.py files (torch imported by the caller first)."""
import torch

EPS32 = 2.0 ** -24          # unit roundoff of float32

# Two columns; conv1 split, conv2 within a column (groups=2), response norm per column, max pool
# with ceil_mode, conv3 reading two inputs (a list: concatenated along channels), avg pool with
# padding, dropout, fc5 reading two inputs, a whole fc6 for the classes.
MODEL = """
[model]
name = "torchtest"
channels = 3
classes = 7
columns = 2

[layers.conv1]
type = "conv"
input = "data"
filters = 8
size = 5
stride = 2
padding = 2
init_std = 0.2
init_bias = 0.1

[layers.relu1]
type = "relu"

[layers.norm1]
type = "lrn"
size = 5
alpha = 0.01

[layers.pool1]
type = "pool"
size = 3
stride = 2
ceil_mode = true

[layers.conv2]
type = "conv"
filters = 12
size = 3
padding = 1
groups = 2
init_std = 0.2

[layers.relu2]
type = "relu"

[layers.conv3]
type = "conv"
input = ["relu2", "pool1"]
filters = 8
size = 3
padding = 1
init_std = 0.15

[layers.relu3]
type = "relu"

[layers.pool3]
type = "pool"
mode = "avg"
size = 3
stride = 2
padding = 1

[layers.fc4]
type = "fc"
outputs = 16
init_std = 0.1

[layers.relu4]
type = "relu"

[layers.drop4]
type = "dropout"
p = 0.5

[layers.fc5]
type = "fc"
input = ["drop4", "pool3"]
outputs = 12
init_std = 0.1

[layers.relu5]
type = "relu"

[layers.fc6]
type = "fc"
outputs = "classes"
split = false
init_std = 0.1

[layers.probs]
type = "softmax"

[learning]
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
bias_decay = 1e-4

[data]
image_size = 27
crop = 23
scale = 0.5
"""



def assert_within(actual, expected, scale, terms, what="", factor=4.0):
    """|actual - expected| <= factor * terms * eps32 * scale + a float32 ulp of expected.

    ``scale``: the sum of the absolute values of the terms (a tensor like expected, or a
    number); ``terms``: how many terms each result accumulates (see tests/test_torch_ops.py)."""
    a = torch.as_tensor(actual).double()
    e = torch.as_tensor(expected).double()
    s = torch.as_tensor(scale).double()
    bound = factor * terms * EPS32 * s + EPS32 * e.abs() + 1e-30
    err = (a - e).abs()
    bad = err > bound
    if bool(bad.any()):
        i = int(torch.argmax((err / bound).flatten()))
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.numel()} entries off by more "
                             f"than the bound; worst at flat index {i}: got {a.flatten()[i]:.9g}, "
                             f"want {e.flatten()[i]:.9g}, bound {bound.flatten()[i]:.3g}")


def lrn_reference(x, *, size, k, alpha, beta, alpha_over_size, blocks=1):
    """Response norm written channel by channel from the formula (float64-friendly)."""
    n, c, h, w = x.shape
    xb = x.reshape(n * blocks, c // blocks, h, w)
    cb = c // blocks
    a = alpha / size if alpha_over_size else alpha
    out = []
    for i in range(cb):
        lo, hi = max(0, i - size // 2), min(cb - 1, i + (size - 1) // 2)
        s = (xb[:, lo:hi + 1] ** 2).sum(dim=1)
        out.append(xb[:, i] * (k + a * s) ** (-beta))
    return torch.stack(out, dim=1).reshape(n, c, h, w)
