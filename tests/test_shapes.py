"""alexnet_ext._shapes (the AlexNet shapes of bench/ and the gpu_scale tests) against the shipped
model file, whose shape inference test_modelfile.py checks against the paper."""
import math

from alexnet_ext import _shapes as S
from alexnet_ext import ops
from alexnet_ext.nn import load_model


def test_shapes_match_the_shipped_alexnet():
    spec = load_model("alexnet", classes=S.CLASSES)
    layers = {L.name: L for L in spec.layers}
    assert spec.input_shape == S.INPUT
    prev = "data"
    for name, conv in S.CONV.items():
        # each conv reads the previous conv's output after pooling (or the images)
        assert spec.shapes[layers[name].inputs[0]] == S.CONV[name].images(1)[1:], name
        assert layers[name].params[f"{name}.weight"] == conv.filters(), name
        assert spec.shapes[name] == conv.outputs(1)[1:], name
        assert conv.out == ops.conv_output_size(conv.h, conv.k, conv.stride, conv.padding)
        assert conv.kwargs == dict(stride=conv.stride, padding=conv.padding, groups=conv.groups)
        assert conv.flops(2) == 2 * 2 * math.prod(conv.outputs(1)) * math.prod(conv.filters()[1:])
        prev = name
    assert prev == "conv5"
    assert spec.shapes["conv1"] == S.NORM1 == spec.shapes["norm1"]
    assert (layers["pool1"].attrs["size"], layers["pool1"].attrs["stride"]) == \
        (S.POOL["size"], S.POOL["stride"])
    lrn = layers["norm1"].attrs
    assert {k: lrn[k] for k in S.LRN} == S.LRN
    c, h, w = spec.shapes["pool2"]
    assert S.POOL2_COLUMN == (c // 2, h, w)
    for name, (d_in, d_out) in S.FC.items():
        assert layers[name].params[f"{name}.weight"] == (d_out, d_in), name
    assert layers["drop6"].attrs["p"] == layers["drop7"].attrs["p"] == S.DROPOUT_P
    assert spec.learning["batch_size"] == S.BATCH
