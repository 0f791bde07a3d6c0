"""Convolution: filterActs (forward), imgActs (grad w.r.t. images), weightActs (grad w.r.t. filters).

Kernels: ``csrc/cpu/conv.cpp`` (im2col + OpenBLAS sgemm) for NumPy arrays and
``csrc/cuda/conv_gemm.cu`` (implicit GEMM) for :class:`alexnet_ext.cuda.DeviceArray` arguments, with
the same semantics. See ``csrc/conv.h`` for the formula and ``docs/CUDA_CONV.md`` for the GPU
design. On the GPU the ops are queued on the current stream and return at once.

``precision`` (filter_acts, img_acts, weight_acts) picks the arithmetic of the products; the sums
are always float32 and so are the result, ``out`` and ``bias``:

* ``"fp32"``: float32 operands, float32 products (CPU or GPU).
* ``"tf32"``: float32 operands, each rounded to tf32 (10 mantissa bits, round to nearest with
  ties away from zero) before an exact product; GPU only (tensor cores, sm_80+).
* ``"bf16"``: bfloat16 operands (8 significant bits; make them with :func:`alexnet_ext.ops.cast`,
  which rounds to nearest even), exact products; GPU only (tensor cores, sm_80+).
* ``None`` (default): ``"fp32"`` for float32 operands, ``"bf16"`` for bfloat16 ones.

On a GPU before sm_80 tf32/bf16 run the fp32 kernels on the same (rounded) values: never less
precise. Nothing converts silently: mixed or mismatched operand dtypes raise ``TypeError``.
``cuda.set_conv_kernel(3)`` still routes ``"fp32"`` through tf32, process-wide.

``layout`` (all four ops) is ``"NCHW"`` (default) or ``"NHWC"``: channels innermost, images
(N, H, W, C), hidden activations and their gradients (N, Ho, Wo, F), filters (F, kh, kw, C/groups),
each a dense C-contiguous array in that order: the physical memory of PyTorch's
``channels_last`` tensors (``x.permute(0, 2, 3, 1).contiguous()``). Nothing is transposed per
call. On the GPU all three passes in "tf32"/"bf16" run the tensor-core kernels with NHWC
loaders (filter_acts / img_acts: 16-byte loads of 8 bf16 / 4 tf32 channels when C/groups resp.
F/groups is a multiple of that; weight_acts: element-wise loads along the channels; img_acts
without the space-to-depth path of NCHW); "fp32" NHWC runs direct loops
(``csrc/cuda/conv_reference.cu``): correct for every shape, but slow. On the CPU they are
im2col + sgemm as NCHW.

Epilogue (filter_acts, img_acts): the layer's ReLU and a bfloat16 result are applied in the store
of each output element, after bias and the accumulate form, so they cost no pass over the
tensor (``csrc/conv.h``'s ``ConvEpilogue``; ``docs/CUDA_CONV.md``, "Epilogue"):

* ``filter_acts(..., activation="relu")`` is ``ops.relu(filter_acts(...))``, bit for bit;
* ``img_acts(..., relu_mask=y)`` is ``ops.relu_undo(img_acts(...), y)`` (the gradient zeroed
  where the ReLU output ``y``, the conv's input images, is ``<= 0`` or NaN), bit for bit;
* ``out_dtype=alexnet_ext.cuda.bfloat16`` (GPU only) stores each float32 result rounded to
  nearest even: the float32 op followed by ``ops.cast``, bit for bit (a bfloat16 ``out`` read by
  ``scale_targets != 0`` is widened exactly).
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .. import _validate as V
from . import _pool as P

__all__ = ["conv_bias_grad", "conv_output_size", "filter_acts", "img_acts", "weight_acts"]


def conv_output_size(size: int, filter_size: int, stride: int = 1, padding: int = 0,
                     ceil_mode: bool = False) -> int:
    """Output length along one axis.

    ``floor((size + 2*padding - filter_size) / stride) + 1``; with ``ceil_mode`` cuda-convnet's
    ``1 + ceil((size + 2*padding - filter_size) / stride)`` (the overhanging windows read zeros).
    """
    size, filter_size, stride, padding = V.window_axis(size, filter_size, stride, padding,
                                                       "filter_size")
    span = size + 2 * padding - filter_size
    if span < 0:
        raise ValueError(f"filter of size {filter_size} is larger than the padded input "
                         f"({size} + 2*{padding})")
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def _params(stride, padding, groups, ceil_mode):
    sh, sw = V.int_pair(stride, "stride", 1)
    ph, pw = V.int_pair(padding, "padding", 0)
    groups = V.integer(groups, "groups", 1, V.GEOMETRY_MAX)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode: expected a bool, got {type(ceil_mode).__name__}")
    return sh, sw, ph, pw, groups, bool(ceil_mode)


def _geometry(n, c, h, w, f, kh, kw, sh, sw, ph, pw, groups, ceil_mode, image_name):
    if c % groups:
        raise ValueError(f"{image_name}: {c} channels are not divisible by groups={groups}")
    if f % groups:
        raise ValueError(f"filters: {f} filters are not divisible by groups={groups}")
    if ph > h + kh or pw > w + kw:  # more only adds outputs that see nothing but zeros
        raise ValueError(f"padding: expected at most image side + filter side per axis "
                         f"(<= ({h + kh}, {w + kw})), got ({ph}, {pw})")
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"filters: a {kh}x{kw} window is larger than the padded input "
                         f"{h + 2 * ph}x{w + 2 * pw} ({h}x{w} with padding ({ph}, {pw}))")
    ho = conv_output_size(h, kh, sh, ph, ceil_mode)
    wo = conv_output_size(w, kw, sw, pw, ceil_mode)
    return _core.ConvGeometry(n=n, c=c, h=h, w=w, f=f, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
                              groups=groups, ho=ho, wo=wo)


# The shape strings of the three roles per layout (for error messages).
_SHAPES = {
    "NCHW": {"images": "(N, C, H, W)", "filters": "(F, C/groups, kh, kw)", "hid": "(N, F, Ho, Wo)"},
    "NHWC": {"images": "(N, H, W, C)", "filters": "(F, kh, kw, C/groups)", "hid": "(N, Ho, Wo, F)"},
}


def _layout(layout):
    return P.layout(layout), _SHAPES[layout]


# (n, c, h, w) of an images-shaped array, (f, c/groups, kh, kw) of a filters-shaped one, and the
# (n, f, ho, wo) shape in the layout: the pooling ops' helpers (channels move, the rest keeps order).
_image_dims = _filter_dims = P.dims
_hid_shape = P.shape


def _scales(scale_targets, scale_output):
    return V.real(scale_targets, "scale_targets"), V.real(scale_output, "scale_output")


def _out_dtype(out_dtype, out, on_gpu):
    """The result's dtype: float32 or bfloat16 (GPU only); None takes a given ``out``'s dtype
    (as fc and softmax_log_loss_undo do), else float32."""
    if out_dtype is None:
        if out is not None and getattr(out, "dtype", None) == V.BF16:
            if not on_gpu:
                raise TypeError("out: a bfloat16 result runs on the GPU only (DeviceArray "
                                "operands); on the host compute float32 and convert with ops.cast")
            return V.BF16
        return V.FLOAT
    try:
        dt = np.dtype(out_dtype)
    except TypeError:
        dt = None
    if dt not in (V.FLOAT, V.BF16):
        raise TypeError(f"out_dtype: expected None, numpy.float32 or alexnet_ext.cuda.bfloat16, "
                        f"got {out_dtype!r}")
    if dt == V.BF16 and not on_gpu:  # TypeError, as every host bfloat16 refusal
        raise TypeError("out_dtype: a bfloat16 result runs on the GPU only (DeviceArray "
                         "operands); on the host compute float32 and convert with ops.cast")
    return dt


def _target(out, shape, dtype, st, **inputs):
    """``out`` (or a fresh array) of ``shape`` and ``dtype`` (see V.output, which is float32)."""
    if dtype == V.FLOAT:
        return V.output(out, shape, scale_targets=st, **inputs)
    if out is None:
        if st != 0.0:
            raise ValueError("scale_targets: a non-zero scale_targets accumulates into out=, "
                             "so out must be given")
        return V.empty_like_inputs(shape, dtype, inputs.values())
    V.real_array(out, "out", len(shape))
    if out.dtype != dtype:
        raise TypeError(f"out: expected dtype bfloat16 (out_dtype), got {out.dtype}")
    V.expect_shape(out, shape, "out")
    V.writable(out, "out")
    V.no_alias(out, "out", **inputs)
    return out


def filter_acts(images, filters, *, bias=None, stride=1, padding=0, groups=1, ceil_mode=False,
                out=None, scale_targets=0.0, scale_output=1.0, precision=None, layout="NCHW",
                activation=None, out_dtype=None):
    """Convolution forward (cuda-convnet's filterActs).

    Args:
        images: (N, C, H, W) float32 (bfloat16 with precision "bf16").
        filters: (F, C/groups, kh, kw), images' dtype.
        bias: optional (F,) float32, added to every output position of its map.
        stride, padding: int or (h, w) pair. Padding is zeros on all four sides.
        groups: the channels and filters split into this many independent groups
            (AlexNet's two columns are groups=2).
        ceil_mode: output size ``1 + ceil((H + 2p - kh) / s)`` instead of floor; windows that
            overhang the padded input read zeros.
        out, scale_targets, scale_output: accumulate form,
            ``out = scale_targets * out + scale_output * result``. With ``scale_targets == 0``
            ``out`` is not read (it may hold garbage or NaNs).
        precision: None, "fp32", "tf32" or "bf16" (see the module docstring).
        layout: "NCHW" or "NHWC" (images (N, H, W, C), filters (F, kh, kw, C/groups), result
            (N, Ho, Wo, F); see the module docstring).
        activation: None or "relu": ``max(v, 0)`` (NaN kept) of every stored value, after bias
            and the accumulate form (as ``ops.relu`` of the result, fused into the store).
        out_dtype: ``numpy.float32`` or ``alexnet_ext.cuda.bfloat16`` (GPU only): each float32
            result rounded to nearest even (``out`` must then be bfloat16). None: ``out``'s
            dtype when given, else float32 (as :func:`~alexnet_ext.ops.fc`).

    Returns:
        (N, F, Ho, Wo) ((N, Ho, Wo, F) in NHWC) of ``out_dtype``, ``out`` itself when given.
    """
    layout, shp = _layout(layout)
    prec = V.conv_precision(precision, images=(images, shp["images"]),
                            filters=(filters, shp["filters"]))
    sh, sw, ph, pw, groups, ceil_mode = _params(stride, padding, groups, ceil_mode)
    st, so = _scales(scale_targets, scale_output)
    n, c, h, w = _image_dims(images.shape, layout)
    f, cg, kh, kw = _filter_dims(filters.shape, layout)
    if c % groups:
        raise ValueError(f"images: {c} channels are not divisible by groups={groups}")
    if cg * groups != c:
        raise ValueError(f"filters: expected {c}/{groups} = {c / groups:g} input channels per "
                         f"filter for images with {c} channels and groups={groups}, got {cg}")
    geo = _geometry(n, c, h, w, f, kh, kw, sh, sw, ph, pw, groups, ceil_mode, "images")
    if bias is not None:
        V.float_array(bias, "bias", 1, "(F,)")
        V.expect_shape(bias, (f,), "bias", "one per filter")
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation: expected None or 'relu', got {V._type_name(activation)}")
    if activation is not None and activation != "relu":
        raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
    k = V.backend(images, filters, bias, out)
    dtype = _out_dtype(out_dtype, out, V._is_device(images))
    out = _target(out, _hid_shape(n, f, geo.ho, geo.wo, layout), dtype, st, images=images,
                  filters=filters, bias=bias)
    k.filter_acts(images, filters, bias, out, geo, st, so, prec, layout, activation == "relu")
    return out


def img_acts(hid_grads, filters, *, image_size, stride=1, padding=0, groups=1, ceil_mode=False,
             out=None, scale_targets=0.0, scale_output=1.0, precision=None, layout="NCHW",
             relu_mask=None, out_dtype=None):
    """Gradient of :func:`filter_acts` with respect to its images (cuda-convnet's imgActs).

    Args:
        hid_grads: (N, F, Ho, Wo) float32 (bfloat16 with precision "bf16"), the gradient
            w.r.t. filter_acts' output.
        filters: (F, C/groups, kh, kw), hid_grads' dtype.
        image_size: (H, W) of the images (or an int for square ones): several image sizes map to
            the same output size, so it must be given.
        stride, padding, groups, ceil_mode: as passed to :func:`filter_acts`.
        out, scale_targets, scale_output: accumulate form (see :func:`filter_acts`).
        precision: None, "fp32", "tf32" or "bf16" (see the module docstring).
        layout: "NCHW" or "NHWC" (hid_grads (N, Ho, Wo, F), filters (F, kh, kw, C/groups),
            result (N, H, W, C)).
        relu_mask: None, or the conv's input images when they are a ReLU's output (the result's
            shape, hid_grads' dtype): the gradient is zeroed where ``relu_mask <= 0`` (or NaN),
            after the accumulate form (as ``ops.relu_undo(result, relu_mask)``, fused into the
            store).
        out_dtype: as :func:`filter_acts` (None: ``out``'s dtype when given, else float32).

    Returns:
        (N, C, H, W) ((N, H, W, C) in NHWC) of ``out_dtype`` with C = (C/groups) * groups.
    """
    layout, shp = _layout(layout)
    prec = V.conv_precision(precision, hid_grads=(hid_grads, shp["hid"]),
                            filters=(filters, shp["filters"]))
    h, w = V.int_pair(image_size, "image_size", 1)
    sh, sw, ph, pw, groups, ceil_mode = _params(stride, padding, groups, ceil_mode)
    st, so = _scales(scale_targets, scale_output)
    n, f = _image_dims(hid_grads.shape, layout)[:2]
    fk, cg, kh, kw = _filter_dims(filters.shape, layout)
    if fk != f:
        raise ValueError(f"filters: expected {f} filters to match hid_grads' {f} maps, got {fk}")
    geo = _geometry(n, cg * groups, h, w, f, kh, kw, sh, sw, ph, pw, groups, ceil_mode, "images")
    V.expect_shape(hid_grads, _hid_shape(n, f, geo.ho, geo.wo, layout), "hid_grads",
                   f"the output size of a {kh}x{kw} filter over a {h}x{w} image, {shp['hid']}")
    ishape = _hid_shape(n, cg * groups, h, w, layout)
    if relu_mask is not None:
        V.real_array(relu_mask, "relu_mask", 4, shp["images"], like=hid_grads,
                     like_name="hid_grads")
        V.expect_shape(relu_mask, ishape, "relu_mask", f"the images' shape, {shp['images']}")
    k = V.backend(hid_grads, filters, out, relu_mask)
    dtype = _out_dtype(out_dtype, out, V._is_device(hid_grads))
    out = _target(out, ishape, dtype, st, hid_grads=hid_grads, filters=filters,
                  relu_mask=relu_mask)
    k.img_acts(hid_grads, filters, out, geo, st, so, prec, layout, relu_mask)
    return out


def weight_acts(images, hid_grads, *, filter_size, stride=1, padding=0, groups=1,
                ceil_mode=False, out=None, scale_targets=0.0, scale_output=1.0, precision=None,
                layout="NCHW"):
    """Gradient of :func:`filter_acts` with respect to its filters (cuda-convnet's weightActs).

    Sums over the batch. Args as :func:`img_acts`, with ``images`` (N, C, H, W) ((N, H, W, C) in
    NHWC; of hid_grads' dtype) and ``filter_size`` (kh, kw) or an int.

    Returns:
        (F, C/groups, kh, kw) float32 ((F, kh, kw, C/groups) in NHWC).
    """
    layout, shp = _layout(layout)
    prec = V.conv_precision(precision, images=(images, shp["images"]),
                            hid_grads=(hid_grads, shp["hid"]))
    kh, kw = V.int_pair(filter_size, "filter_size", 1)
    sh, sw, ph, pw, groups, ceil_mode = _params(stride, padding, groups, ceil_mode)
    st, so = _scales(scale_targets, scale_output)
    n, c, h, w = _image_dims(images.shape, layout)
    f = _image_dims(hid_grads.shape, layout)[1]
    if hid_grads.shape[0] != n:
        raise ValueError(f"hid_grads: expected {n} images to match images, got {hid_grads.shape[0]}")
    geo = _geometry(n, c, h, w, f, kh, kw, sh, sw, ph, pw, groups, ceil_mode, "images")
    V.expect_shape(hid_grads, _hid_shape(n, f, geo.ho, geo.wo, layout), "hid_grads",
                   f"the output size of a {kh}x{kw} filter over a {h}x{w} image, {shp['hid']}")
    k = V.backend(images, hid_grads, out)
    wshape = (f, kh, kw, c // groups) if layout == "NHWC" else (f, c // groups, kh, kw)
    out = V.output(out, wshape, scale_targets=st, images=images, hid_grads=hid_grads)
    k.weight_acts(images, hid_grads, out, geo, st, so, prec, layout)
    return out


def conv_bias_grad(hid_grads, *, out=None, scale_targets=0.0, scale_output=1.0, layout="NCHW"):
    """Gradient of :func:`filter_acts`' bias: ``hid_grads`` (N, F, Ho, Wo) float32 ((N, Ho, Wo, F)
    with ``layout="NHWC"``; bfloat16 on the GPU, widened exactly) summed in float32 to a float32
    (F,)."""
    layout, shp = _layout(layout)
    V.real_array(hid_grads, "hid_grads", 4, shp["hid"])
    st, so = _scales(scale_targets, scale_output)
    k = V.backend(hid_grads, out)
    f = hid_grads.shape[3 if layout == "NHWC" else 1]
    out = V.output(out, (f,), scale_targets=st, hid_grads=hid_grads)
    k.conv_bias_grad(hid_grads, out, st, so, layout)
    return out
