"""AlexNet's layer shapes, one table for the benchmarks (bench/) and the GPU-sized tests
(``gpu_scale``).

The paper net as ``models/alexnet.toml`` writes it, merged on one device: ``groups=2`` where the
two columns see only their own half (conv2, conv4, conv5). Shapes are per image unless a
function takes the batch ``n``; images and activations are NCHW, filters (F, C/groups, k, k).
tests/test_shapes.py checks this table against the shipped model file.
"""
from __future__ import annotations

from dataclasses import dataclass

BATCH = 128                # the paper's batch size
STORED = 256               # training images are stored at 256x256 ...
INPUT = (3, 224, 224)      # ... and cropped to 224x224
CLASSES = 1000


@dataclass(frozen=True)
class Conv:
    """One conv layer: ``c`` input channels of ``h`` x ``h``, ``f`` filters of ``k`` x ``k``."""

    c: int
    h: int
    f: int
    k: int
    stride: int
    padding: int
    groups: int

    @property
    def out(self) -> int:
        """Output side (floor mode, as the model file)."""
        return (self.h + 2 * self.padding - self.k) // self.stride + 1

    @property
    def kwargs(self) -> dict:
        """The geometry arguments of ``ops.filter_acts`` / ``img_acts`` / ``weight_acts``."""
        return dict(stride=self.stride, padding=self.padding, groups=self.groups)

    def images(self, n: int) -> tuple:
        return (n, self.c, self.h, self.h)

    def filters(self) -> tuple:
        return (self.f, self.c // self.groups, self.k, self.k)

    def outputs(self, n: int) -> tuple:
        return (n, self.f, self.out, self.out)

    def flops(self, n: int) -> float:
        """Multiply-adds x 2 of one pass (all three passes have the same count)."""
        return 2.0 * n * self.f * self.out ** 2 * (self.c // self.groups) * self.k ** 2


CONV = {
    "conv1": Conv(3, 224, 96, 11, 4, 2, 1),
    "conv2": Conv(96, 27, 256, 5, 1, 2, 2),
    "conv3": Conv(256, 13, 384, 3, 1, 1, 1),
    "conv4": Conv(384, 13, 384, 3, 1, 1, 2),
    "conv5": Conv(384, 13, 256, 3, 1, 1, 2),
}

# The layers around the convolutions (per image).
NORM1 = (96, 55, 55)       # response norm 1, pool 1 and ReLU 1 see conv1's output
LRN = dict(size=5, k=2.0, alpha=1e-4, beta=0.75)   # norm1 and norm2 (alpha times the plain sum)
POOL = dict(size=3, stride=2)                     # pool1, pool2, pool5: overlapping max pooling
POOL2_COLUMN = (128, 13, 13)   # one column's pool2 output: conv3 reads it twice in the split net
FC = {"fc6": (9216, 4096), "fc7": (4096, 4096), "fc8": (4096, CLASSES)}   # (inputs, outputs)
DROPOUT_P = 0.5            # before fc7 and fc8
