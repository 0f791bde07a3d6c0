"""Shared by test_sgd_update.py and test_sgd_update_cuda.py: the SGD update references, cases and
data makers."""


SHAPES = {
    "bias": (7,),
    "fc_weights": (33, 65),
    "conv_filters": (12, 3, 11, 11),
    "big_parallel": (256, 1000),
}
