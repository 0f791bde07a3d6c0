"""The kernels of :mod:`alexnet_ext.ops` as ``torch.library`` custom ops (namespace ``alexnet_ext``).

Layout: one section per op family. Each forward op has a real implementation (tensors handed to
the kernels without copies), a fake implementation (output shapes and dtypes only, for meta and
fake tensors, torch.compile and export) and an autograd formula whose backward calls the
matching "undo" op, itself a custom op with a fake implementation. The undo ops that are linear
in their gradient input (img_acts, weight_acts, conv_bias_grad, max_pool_undo, avg_pool_undo,
dropout_undo, softmax_log_loss_undo) have autograd formulas too, so double backward works
through them; response_norm_undo has none (differentiating through it raises torch's error).

Zero copy:

* CPU tensors are viewed as NumPy arrays (``Tensor.numpy()`` shares memory). Outputs are
  allocated by torch and passed as ``out=`` where the op has one, else the op's NumPy result is
  wrapped with ``torch.from_numpy`` (shares memory too).
* CUDA tensors are wrapped with :func:`alexnet_ext.cuda.asarray` (DLPack) while torch's current
  stream of the tensor's device is made alexnet_ext's current stream, so the kernels are queued
  after torch's earlier work on that stream and before its later work, with no host wait.
  Outputs without ``out=`` come back through ``torch.from_dlpack``. No kernel of a training
  step waits for the GPU: the range checks of ``max_pool_undo`` (switches) and
  ``softmax_log_loss_undo`` (labels) run on the GPU and a bad value is raised as a ValueError at
  alexnet_ext's next synchronisation (``alexnet_ext.cuda.synchronize()``, a ``get()``, the loss
  read); ``softmax_log_loss`` waits only to return its loss as a Python float.

Conventions: float32 data, and bfloat16 on CUDA tensors (a ``TypeError`` names the argument
otherwise); the convolutions take a ``precision`` (None, "fp32", "tf32", "bf16"; see their
section); index tensors int32/int64; all tensors of a call on one device (else ``ValueError``).
Non-contiguous inputs are made contiguous first (``Tensor.contiguous()``, a copy; contiguous
inputs are never copied), except that the convolutions, response norm and pooling keep a
channels-last (NHWC) input channels-last and run the NHWC kernels on it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import ops as _ops
from ._interop import _FLOATS, _INDEX, _arr, _channels_last, _check, _check_float, _conv_out, _empty
from ._interop import _empty_in, _from_layout, _in_layout, _layout_of, _on, _pair, _pool_out
from ._interop import _run_into
from ._interop import _same_device, _switch_dtype, _tensor

NS = "alexnet_ext"

__all__ = [
    "avg_pool", "avg_pool_undo", "conv_bias_grad", "dropout", "dropout_undo", "filter_acts",
    "img_acts", "max_pool", "max_pool_undo", "response_norm", "response_norm_undo",
    "softmax_log_loss", "softmax_log_loss_undo", "weight_acts",
]

# ---- convolution ----------------------------------------------------------------------------
#
# Layout follows the primary operand (images; hid_grads for img_acts and conv_bias_grad): a
# channels-last tensor runs the kernels' NHWC path and the result is channels-last, as torch's
# own conv does; the other 4-D operand is brought to the same memory format (a copy only if it
# is not). Dtype: float32, or bfloat16 on the GPU (precision "bf16"); filter_acts and img_acts
# return the operands' dtype, weight_acts and conv_bias_grad float32 (sums kept in float32;
# autograd casts to a bfloat16 parameter's dtype). ``precision``: None (fp32 for float32, bf16
# for bfloat16), "fp32", "tf32" (float32 on the GPU, tensor cores) or "bf16".

def _conv_pass(op, a, b, out, layout, dev, **kwargs):
    """``op(a, b, out=out, layout=layout, **kwargs)`` on zero-copy views of the tensors in
    ``layout`` (the three passes differ only in their operands and keywords)."""
    with _on(dev):
        op(_arr(_in_layout(a, layout)), _arr(_in_layout(b, layout)), layout=layout,
           out=_arr(_in_layout(out, layout)), **kwargs)
    return out


def _conv_fake_check(images, filters, groups):
    _check(images, "images", _FLOATS)
    _check(filters, "filters", _FLOATS)
    torch._check(images.dim() == 4, lambda: f"images: expected 4 dimensions, got {images.dim()}")
    torch._check(filters.dim() == 4, lambda: f"filters: expected 4 dimensions, got {filters.dim()}")
    torch._check(images.shape[1] == filters.shape[1] * groups,
                 lambda: f"filters: expected {images.shape[1]}/{groups} input channels per filter, "
                         f"got {filters.shape[1]}")


@torch.library.custom_op(f"{NS}::filter_acts", mutates_args=())
def filter_acts(images: torch.Tensor, filters: torch.Tensor, bias: torch.Tensor | None,
                stride: Sequence[int], padding: Sequence[int], groups: int,
                ceil_mode: bool, precision: str | None = None) -> torch.Tensor:
    """Convolution forward (:func:`alexnet_ext.ops.filter_acts`): images (N, C, H, W), filters
    (F, C/groups, kh, kw), optional bias (F,) -> (N, F, Ho, Wo) of the images' dtype and memory
    format. A bfloat16 bias is widened to float32 (exact) for the float32 epilogue."""
    _check_float(images, "images")
    _check_float(filters, "filters")
    if bias is not None:
        _check_float(bias, "bias")
        bias = bias.float()
    dev = _same_device(images=images, filters=filters, bias=bias)
    for t, n in ((images, "images"), (filters, "filters")):
        if t.dim() != 4:
            raise ValueError(f"{n}: expected 4 dimensions, got shape {tuple(t.shape)}")
    ho, wo = _conv_out(images.shape[2], images.shape[3], filters.shape[2], filters.shape[3],
                       _pair(stride, "stride"), _pair(padding, "padding"), ceil_mode)
    layout = _layout_of(images)
    out = _empty_in((images.shape[0], filters.shape[0], ho, wo), images, layout)
    return _conv_pass(_ops.filter_acts, images, filters, out, layout, dev, bias=_arr(bias),
                      stride=tuple(stride), padding=tuple(padding), groups=groups,
                      ceil_mode=ceil_mode, precision=precision)


@filter_acts.register_fake
def _(images, filters, bias, stride, padding, groups, ceil_mode, precision=None):
    _conv_fake_check(images, filters, groups)
    ho, wo = _conv_out(images.shape[2], images.shape[3], filters.shape[2], filters.shape[3],
                       stride, padding, ceil_mode)
    return _empty_in((images.shape[0], filters.shape[0], ho, wo), images, _layout_of(images))


@torch.library.custom_op(f"{NS}::img_acts", mutates_args=())
def img_acts(hid_grads: torch.Tensor, filters: torch.Tensor, image_size: Sequence[int],
             stride: Sequence[int], padding: Sequence[int], groups: int,
             ceil_mode: bool, precision: str | None = None) -> torch.Tensor:
    """Gradient of :func:`filter_acts` w.r.t. its images (:func:`alexnet_ext.ops.img_acts`), of
    hid_grads' dtype and memory format."""
    _check_float(hid_grads, "hid_grads")
    _check_float(filters, "filters")
    dev = _same_device(hid_grads=hid_grads, filters=filters)
    layout = _layout_of(hid_grads)
    out = _empty_in((hid_grads.shape[0], filters.shape[1] * groups, *image_size), hid_grads, layout)
    return _conv_pass(_ops.img_acts, hid_grads, filters, out, layout, dev,
                      image_size=tuple(image_size), stride=tuple(stride), padding=tuple(padding),
                      groups=groups, ceil_mode=ceil_mode, precision=precision)


@img_acts.register_fake
def _(hid_grads, filters, image_size, stride, padding, groups, ceil_mode, precision=None):
    _check(hid_grads, "hid_grads", _FLOATS)
    return _empty_in((hid_grads.shape[0], filters.shape[1] * groups, *image_size), hid_grads,
                     _layout_of(hid_grads))


@torch.library.custom_op(f"{NS}::weight_acts", mutates_args=())
def weight_acts(images: torch.Tensor, hid_grads: torch.Tensor, filter_size: Sequence[int],
                stride: Sequence[int], padding: Sequence[int], groups: int,
                ceil_mode: bool, precision: str | None = None) -> torch.Tensor:
    """Gradient of :func:`filter_acts` w.r.t. its filters, summed over the batch
    (:func:`alexnet_ext.ops.weight_acts`): float32, in the images' memory format."""
    _check_float(images, "images")
    _check_float(hid_grads, "hid_grads")
    dev = _same_device(images=images, hid_grads=hid_grads)
    layout = _layout_of(images)
    out = _empty_in((hid_grads.shape[1], images.shape[1] // groups, *filter_size), images, layout,
                    torch.float32)
    return _conv_pass(_ops.weight_acts, images, hid_grads, out, layout, dev,
                      filter_size=tuple(filter_size), stride=tuple(stride),
                      padding=tuple(padding), groups=groups, ceil_mode=ceil_mode,
                      precision=precision)


@weight_acts.register_fake
def _(images, hid_grads, filter_size, stride, padding, groups, ceil_mode, precision=None):
    _check(images, "images", _FLOATS)
    return _empty_in((hid_grads.shape[1], images.shape[1] // groups, *filter_size), images,
                     _layout_of(images), torch.float32)


@torch.library.custom_op(f"{NS}::conv_bias_grad", mutates_args=())
def conv_bias_grad(hid_grads: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`filter_acts`' bias: hid_grads (N, F, Ho, Wo) summed to float32 (F,)."""
    _check_float(hid_grads, "hid_grads")
    dev = _same_device(hid_grads=hid_grads)
    layout = _layout_of(hid_grads)
    out = _empty((hid_grads.shape[1],), hid_grads)
    with _on(dev):
        _ops.conv_bias_grad(_arr(_in_layout(hid_grads, layout)), layout=layout, out=_arr(out))
    return out


@conv_bias_grad.register_fake
def _(hid_grads):
    _check(hid_grads, "hid_grads", _FLOATS)
    return hid_grads.new_empty((hid_grads.shape[1],), dtype=torch.float32)


def _conv_setup(ctx, inputs, output):
    """The three conv passes take (a, b, bias or a size, stride, padding, groups, ceil_mode,
    precision) and are bilinear in (a, b): their gradients are the other two passes on the same
    geometry and precision."""
    a, b, third, stride, padding, groups, ceil_mode, precision = inputs
    ctx.save_for_backward(a, b)
    ctx.geo = (list(stride), list(padding), groups, ceil_mode, precision)
    ctx.has_bias = isinstance(third, torch.Tensor)


def _like(t, ref):
    """``t`` in ``ref``'s dtype and memory format (the kernels take one dtype per call, and a
    gradient keeps the layout of what it is the gradient of)."""
    return _as(t, (ref.dtype, _channels_last(ref)))


def _as(t, form):
    """``t`` in ``form`` = (dtype, channels-last?), what a setup_context keeps of an input
    instead of the input itself."""
    dtype, cl = form
    return t.to(dtype).contiguous(memory_format=torch.channels_last if cl else
                                  torch.contiguous_format)


def _filter_acts_backward(ctx, grad):
    images, filters = ctx.saved_tensors
    grad = _like(grad, images)
    gi = gw = gb = None
    if ctx.needs_input_grad[0]:
        gi = img_acts(grad, filters, list(images.shape[2:]), *ctx.geo)
    if ctx.needs_input_grad[1]:
        gw = weight_acts(images, grad, list(filters.shape[2:]), *ctx.geo)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = conv_bias_grad(grad)
    return gi, gw, gb, None, None, None, None, None


filter_acts.register_autograd(_filter_acts_backward, setup_context=_conv_setup)


# ---- response normalisation -----------------------------------------------------------------
#
# As the convolutions: float32, or bfloat16 on the GPU (y and the gradients in x's dtype, denoms
# float32); a channels-last x runs the NHWC kernels and every 4-D result is channels-last.

@torch.library.custom_op(f"{NS}::response_norm", mutates_args=())
def response_norm(x: torch.Tensor, size: int, k: float, alpha: float, beta: float,
                  alpha_over_size: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Response normalisation across maps (:func:`alexnet_ext.ops.response_norm`) -> (y, denoms).

    ``denoms`` (``k + a * window sum of x**2``, float32, what the backward needs) is
    differentiable too."""
    _check_float(x, "x")
    dev = _same_device(x=x)
    layout = _layout_of(x)
    with _on(dev):
        y, d = _ops.response_norm(_arr(_in_layout(x, layout)), size=size, k=k, alpha=alpha,
                                  beta=beta, alpha_over_size=alpha_over_size, layout=layout)
    return _from_layout(_tensor(y, dev), layout), _from_layout(_tensor(d, dev), layout)


@response_norm.register_fake
def _(x, size, k, alpha, beta, alpha_over_size):
    _check(x, "x", _FLOATS)
    torch._check(x.dim() == 4, lambda: f"x: expected 4 dimensions (N, C, H, W), got {x.dim()}")
    layout = _layout_of(x)
    return _empty_in(x.shape, x, layout), _empty_in(x.shape, x, layout, torch.float32)


@torch.library.custom_op(f"{NS}::response_norm_undo", mutates_args=())
def response_norm_undo(grad_y: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                       denoms: torch.Tensor, size: int, k: float, alpha: float, beta: float,
                       alpha_over_size: bool) -> torch.Tensor:
    """Gradient of :func:`response_norm` w.r.t. x (:func:`alexnet_ext.ops.response_norm_undo`),
    in x's dtype and memory format (the other tensors are brought to x's format)."""
    for t, n in ((grad_y, "grad_y"), (x, "x"), (y, "y")):
        _check_float(t, n)
    _check(denoms, "denoms")
    dev = _same_device(grad_y=grad_y, x=x, y=y, denoms=denoms)
    layout = _layout_of(x)
    with _on(dev):
        g = _ops.response_norm_undo(*(_arr(_in_layout(t, layout)) for t in (grad_y, x, y, denoms)),
                                    size=size, k=k, alpha=alpha, beta=beta,
                                    alpha_over_size=alpha_over_size, layout=layout)
    return _from_layout(_tensor(g, dev), layout)


@response_norm_undo.register_fake
def _(grad_y, x, y, denoms, size, k, alpha, beta, alpha_over_size):
    return _empty_in(x.shape, grad_y, _layout_of(x))


def _rn_setup(ctx, inputs, output):
    x, size, k, alpha, beta, aos = inputs
    y, denoms = output
    ctx.save_for_backward(x, y, denoms)
    ctx.args = (size, k, alpha, beta, aos)
    ctx.set_materialize_grads(False)       # an unused output's gradient stays None: no work


def _rn_backward(ctx, grad_y, grad_denoms):
    x, y, denoms = ctx.saved_tensors
    size, k, alpha, beta, aos = ctx.args
    g = None
    if grad_y is not None:
        g = response_norm_undo(_like(grad_y, x), x, y, denoms, *ctx.args)
    if grad_denoms is not None:
        # denoms[i] = k + a * sum_{j in window(i)} x_j**2: x_j receives 2 a x_j times the sum of
        # grad_denoms[i] over the i whose window holds j (channels j - (size-1)//2 .. j + size//2)
        c = x.shape[1]
        a = alpha / size if aos else alpha
        padded = torch.nn.functional.pad(grad_denoms, (0, 0, 0, 0, (size - 1) // 2, size // 2))
        total = padded[:, 0:c]
        for j in range(1, size):
            total = total + padded[:, j:j + c]
        gd = 2.0 * a * x * total
        g = gd if g is None else g + gd
    return g, None, None, None, None, None


response_norm.register_autograd(_rn_backward, setup_context=_rn_setup)


# ---- pooling --------------------------------------------------------------------------------
#
# float32, or bfloat16 on the GPU; a channels-last x (grad_y for the undos) runs the NHWC kernels
# and the results (switches too) are channels-last. Switches index the plane either way.

@torch.library.custom_op(f"{NS}::max_pool", mutates_args=())
def max_pool(x: torch.Tensor, size: Sequence[int], stride: Sequence[int],
             padding: Sequence[int], ceil_mode: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pooling (:func:`alexnet_ext.ops.max_pool`) -> (y, switches); switches (int32, or int64
    for planes past 2**31 pixels) hold each maximum's flat index ``iy*W + ix`` in its plane."""
    _check_float(x, "x")
    dev = _same_device(x=x)
    layout = _layout_of(x)
    with _on(dev):
        y, s = _ops.max_pool(_arr(_in_layout(x, layout)), size=tuple(size), stride=tuple(stride),
                             padding=tuple(padding), ceil_mode=ceil_mode, layout=layout)
    return _from_layout(_tensor(y, dev), layout), _from_layout(_tensor(s, dev), layout)


@max_pool.register_fake
def _(x, size, stride, padding, ceil_mode):
    _check(x, "x", _FLOATS)
    torch._check(x.dim() == 4, lambda: f"x: expected 4 dimensions (N, C, H, W), got {x.dim()}")
    ho, wo = _pool_out(x.shape[2], x.shape[3], size, stride, padding, ceil_mode)
    shape = (x.shape[0], x.shape[1], ho, wo)
    layout = _layout_of(x)
    return (_empty_in(shape, x, layout),
            _empty_in(shape, x, layout, _switch_dtype(x.shape[2], x.shape[3])))


@torch.library.custom_op(f"{NS}::max_pool_undo", mutates_args=())
def max_pool_undo(grad_y: torch.Tensor, switches: torch.Tensor,
                  image_size: Sequence[int]) -> torch.Tensor:
    """Gradient of :func:`max_pool` w.r.t. x (:func:`alexnet_ext.ops.max_pool_undo`)."""
    _check_float(grad_y, "grad_y")
    _check(switches, "switches", _INDEX)
    dev = _same_device(grad_y=grad_y, switches=switches)
    layout = _layout_of(grad_y)
    with _on(dev):
        g = _ops.max_pool_undo(_arr(_in_layout(grad_y, layout)), _arr(_in_layout(switches, layout)),
                               image_size=tuple(image_size), layout=layout)
    return _from_layout(_tensor(g, dev), layout)


@max_pool_undo.register_fake
def _(grad_y, switches, image_size):
    return _empty_in((grad_y.shape[0], grad_y.shape[1], *image_size), grad_y, _layout_of(grad_y))


def _mp_setup(ctx, inputs, output):
    x = inputs[0]
    ctx.save_for_backward(output[1])
    ctx.image_size = list(x.shape[2:])
    ctx.form = (x.dtype, _channels_last(x))


def _mp_backward(ctx, grad_y, _grad_switches):
    (switches,) = ctx.saved_tensors
    return max_pool_undo(_as(grad_y, ctx.form), switches, ctx.image_size), None, None, None, None


max_pool.register_autograd(_mp_backward, setup_context=_mp_setup)


@torch.library.custom_op(f"{NS}::avg_pool", mutates_args=())
def avg_pool(x: torch.Tensor, size: Sequence[int], stride: Sequence[int],
             padding: Sequence[int], ceil_mode: bool) -> torch.Tensor:
    """Average pooling over each window's real pixels (:func:`alexnet_ext.ops.avg_pool`)."""
    _check_float(x, "x")
    dev = _same_device(x=x)
    layout = _layout_of(x)
    with _on(dev):
        y = _ops.avg_pool(_arr(_in_layout(x, layout)), size=tuple(size), stride=tuple(stride),
                          padding=tuple(padding), ceil_mode=ceil_mode, layout=layout)
    return _from_layout(_tensor(y, dev), layout)


@avg_pool.register_fake
def _(x, size, stride, padding, ceil_mode):
    _check(x, "x", _FLOATS)
    torch._check(x.dim() == 4, lambda: f"x: expected 4 dimensions (N, C, H, W), got {x.dim()}")
    ho, wo = _pool_out(x.shape[2], x.shape[3], size, stride, padding, ceil_mode)
    return _empty_in((x.shape[0], x.shape[1], ho, wo), x, _layout_of(x))


@torch.library.custom_op(f"{NS}::avg_pool_undo", mutates_args=())
def avg_pool_undo(grad_y: torch.Tensor, image_size: Sequence[int], size: Sequence[int],
                  stride: Sequence[int], padding: Sequence[int], ceil_mode: bool) -> torch.Tensor:
    """Gradient of :func:`avg_pool` w.r.t. x (:func:`alexnet_ext.ops.avg_pool_undo`)."""
    _check_float(grad_y, "grad_y")
    dev = _same_device(grad_y=grad_y)
    layout = _layout_of(grad_y)
    with _on(dev):
        g = _ops.avg_pool_undo(_arr(_in_layout(grad_y, layout)), image_size=tuple(image_size),
                               size=tuple(size), stride=tuple(stride), padding=tuple(padding),
                               ceil_mode=ceil_mode, layout=layout)
    return _from_layout(_tensor(g, dev), layout)


@avg_pool_undo.register_fake
def _(grad_y, image_size, size, stride, padding, ceil_mode):
    return _empty_in((grad_y.shape[0], grad_y.shape[1], *image_size), grad_y, _layout_of(grad_y))


def _ap_setup(ctx, inputs, output):
    x, size, stride, padding, ceil_mode = inputs
    ctx.args = (list(x.shape[2:]), list(size), list(stride), list(padding), ceil_mode)
    ctx.form = (x.dtype, _channels_last(x))


def _ap_backward(ctx, grad_y):
    return avg_pool_undo(_as(grad_y, ctx.form), *ctx.args), None, None, None, None


avg_pool.register_autograd(_ap_backward, setup_context=_ap_setup)


# ---- dropout --------------------------------------------------------------------------------
#
# Element-wise in the logical (row-major) order, so a mask depends on (seed, offset) and the
# shape only, never on the memory format (a channels-last x is read through a contiguous copy).

@torch.library.custom_op(f"{NS}::dropout", mutates_args=())
def dropout(x: torch.Tensor, p: float, seed: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverted dropout with the package's Philox masks (:func:`alexnet_ext.ops.dropout`)
    -> (y of x's dtype, mask uint8). ``seed`` and ``offset`` are ints in [0, 2**63) (torch's
    int is 64-bit signed; the kernels accept up to 2**64 - 1)."""
    _check_float(x, "x")
    dev = _same_device(x=x)
    for v, n in ((seed, "seed"), (offset, "offset")):
        if v < 0:
            raise ValueError(f"{n}: expected an int in [0, 2**63), got {v}")
    y = _empty(x.shape, x, x.dtype)
    mask = _empty(x.shape, x, torch.uint8)
    with _on(dev):
        _ops.dropout(_arr(x), p=p, seed=seed, offset=offset, out=_arr(y), mask_out=_arr(mask))
    return y, mask


@dropout.register_fake
def _(x, p, seed, offset):
    _check(x, "x", _FLOATS)
    return x.new_empty(x.shape), x.new_empty(x.shape, dtype=torch.uint8)


@torch.library.custom_op(f"{NS}::dropout_undo", mutates_args=())
def dropout_undo(grad_y: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """Gradient of :func:`dropout` (:func:`alexnet_ext.ops.dropout_undo`), of grad_y's dtype."""
    _check_float(grad_y, "grad_y")
    _check(mask, "mask", (torch.uint8,))
    return _run_into(_ops.dropout_undo, grad_y.shape, dict(grad_y=grad_y, mask=mask),
                     grad_y.dtype, p=p)


@dropout_undo.register_fake
def _(grad_y, mask, p):
    return grad_y.new_empty(grad_y.shape)


def _do_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.p = inputs[1]
    ctx.dtype = inputs[0].dtype


def _do_backward(ctx, grad_y, _grad_mask):
    (mask,) = ctx.saved_tensors
    return dropout_undo(grad_y.to(ctx.dtype).contiguous(), mask, ctx.p), None, None, None


dropout.register_autograd(_do_backward, setup_context=_do_setup)


# ---- softmax log-loss -----------------------------------------------------------------------

@torch.library.custom_op(f"{NS}::softmax_log_loss", mutates_args=())
def softmax_log_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax and the mean negative log-probability of the labels
    (:func:`alexnet_ext.ops.softmax_log_loss`) -> (loss: 0-dim float32, probs (N, K) float32).

    Both outputs are differentiable. Logits may be bfloat16 on the GPU (computed in float32).
    On the CPU the loss is summed in double and rounded once; on the GPU it stays on the device
    (no wait for the GPU)."""
    _check_float(logits, "logits")
    _check(labels, "labels", _INDEX)
    dev = _same_device(logits=logits, labels=labels)
    probs = _empty(logits.shape, logits, torch.float32)
    with _on(dev):
        loss, _ = _ops.softmax_log_loss(_arr(logits), _arr(labels), out=_arr(probs), wait=False)
    if dev.type == "cpu":
        return torch.tensor(loss, dtype=torch.float32), probs
    # a PendingLoss: the summed loss still on the GPU, divided there (no host wait)
    return torch.from_dlpack(loss.total).reshape(()) / loss.n, probs


@softmax_log_loss.register_fake
def _(logits, labels):
    _check(logits, "logits", _FLOATS)
    _check(labels, "labels", _INDEX)
    return logits.new_empty((), dtype=torch.float32), logits.new_empty(logits.shape,
                                                                        dtype=torch.float32)


@torch.library.custom_op(f"{NS}::softmax_log_loss_undo", mutates_args=())
def softmax_log_loss_undo(probs: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """``(probs - onehot(labels)) * scale`` (:func:`alexnet_ext.ops.softmax_log_loss_undo`)."""
    _check(probs, "probs")
    _check(labels, "labels", _INDEX)
    return _run_into(_ops.softmax_log_loss_undo, probs.shape, dict(probs=probs, labels=labels),
                     scale=scale)


@softmax_log_loss_undo.register_fake
def _(probs, labels, scale):
    return probs.new_empty(probs.shape)


def _sl_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1], inputs[1])
    ctx.set_materialize_grads(False)       # probs unused: its gradient stays None, no work


def _sl_backward(ctx, grad_loss, grad_probs):
    probs, labels = ctx.saved_tensors
    # d(mean loss)/d logits, times the incoming gradient (a 0-dim tensor: no host read)
    g = None
    if grad_loss is not None:
        g = softmax_log_loss_undo(probs, labels, 1.0 / probs.shape[0]) * grad_loss
    if grad_probs is not None:
        # probs is differentiable too (double backward reaches it through the undo above):
        # the softmax Jacobian, probs * (gp - <gp, probs>) per row
        gp = probs * (grad_probs - (grad_probs * probs).sum(dim=1, keepdim=True))
        g = gp if g is None else g + gp
    return g, None


softmax_log_loss.register_autograd(_sl_backward, setup_context=_sl_setup)


# ---- double backward: the undo ops that are linear in their gradient input -------------------
# (response_norm_undo, nonlinear in x, y and denoms, has none: differentiating through it raises
# torch's "no autograd formula" error.)

def _ia_backward(ctx, grad):               # img_acts(hid_grads, filters)
    hid_grads, filters = ctx.saved_tensors
    grad = _like(grad, hid_grads)
    gh = filter_acts(grad, filters, None, *ctx.geo) if ctx.needs_input_grad[0] else None
    gf = (weight_acts(grad, hid_grads, list(filters.shape[2:]), *ctx.geo)
          if ctx.needs_input_grad[1] else None)
    return gh, gf, None, None, None, None, None, None


def _wa_backward(ctx, grad):               # weight_acts(images, hid_grads)
    images, hid_grads = ctx.saved_tensors
    grad = _like(grad, images)             # a filters gradient (float32) in the images' dtype
    gi = (img_acts(hid_grads, grad, list(images.shape[2:]), *ctx.geo)
          if ctx.needs_input_grad[0] else None)
    gh = filter_acts(images, grad, None, *ctx.geo) if ctx.needs_input_grad[1] else None
    return gi, gh, None, None, None, None, None, None


img_acts.register_autograd(_ia_backward, setup_context=_conv_setup)
weight_acts.register_autograd(_wa_backward, setup_context=_conv_setup)


def _bg_setup(ctx, inputs, output):
    ctx.shape = list(inputs[0].shape)


def _bg_backward(ctx, grad):
    return grad.reshape(1, -1, 1, 1).expand(ctx.shape).contiguous()


conv_bias_grad.register_autograd(_bg_backward, setup_context=_bg_setup)


def _mpu_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _mpu_backward(ctx, grad):              # max_pool_undo scatters; its adjoint gathers
    (switches,) = ctx.saved_tensors
    n, c = switches.shape[:2]
    picked = grad.reshape(n, c, -1).gather(2, switches.reshape(n, c, -1).long())
    return picked.reshape(switches.shape), None, None


max_pool_undo.register_autograd(_mpu_backward, setup_context=_mpu_setup)


def _apu_setup(ctx, inputs, output):
    grad_y, image_size, size, stride, padding, ceil_mode = inputs
    ctx.args = (list(size), list(stride), list(padding), ceil_mode)


def _apu_backward(ctx, grad):              # avg_pool_undo is avg_pool's exact adjoint
    return avg_pool(grad.contiguous(), *ctx.args), None, None, None, None, None


avg_pool_undo.register_autograd(_apu_backward, setup_context=_apu_setup)


def _dou_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.p = inputs[2]


def _dou_backward(ctx, grad):
    (mask,) = ctx.saved_tensors
    return dropout_undo(grad.contiguous(), mask, ctx.p), None, None


dropout_undo.register_autograd(_dou_backward, setup_context=_dou_setup)


def _slu_setup(ctx, inputs, output):
    ctx.scale = inputs[2]


def _slu_backward(ctx, grad):
    return grad * ctx.scale, None, None


softmax_log_loss_undo.register_autograd(_slu_backward, setup_context=_slu_setup)


# ---- autocast -------------------------------------------------------------------------------
# Under torch.autocast, on the GPU the convolution forward runs in bfloat16 on the tensor cores
# (the kernels have no float16 path, so an autocast dtype of float16 gives bfloat16 here too)
# and the softmax log-loss in float32 (torch's own policy for softmax and cross entropy); the
# other ops run in their inputs' dtype. On the CPU the kernels are float32 only, so every op's
# floating inputs are cast to float32 there (a bfloat16 activation from a torch layer is
# accepted instead of refused). float64 is never cast: it is refused as outside autocast.
# The casts are differentiable (autograd converts the gradients back).

for _op, _cuda in ((filter_acts, torch.bfloat16), (softmax_log_loss, torch.float32),
                   (response_norm, None), (max_pool, None), (avg_pool, None), (dropout, None)):
    _op.register_autocast("cpu", torch.float32)
    if _cuda is not None:
        _op.register_autocast("cuda", _cuda)
