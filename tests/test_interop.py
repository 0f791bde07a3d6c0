"""Weight files load into an equivalent PyTorch module and back (docs/MODELS.md's mapping)."""
import numpy as np
import pytest

from alexnet_ext.nn import Net, export_weights, import_weights, parse_model
from helpers import random_params
from models_fixtures import INTEROP

torch = pytest.importorskip("torch")
F = torch.nn.functional
st = pytest.importorskip("safetensors.torch")

MODEL = INTEROP     # two columns, every cross-column pattern of the paper


class TorchNet(torch.nn.Module):
    """The same network written with torch.nn; attribute names = our parameter names."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.conv3 = nn.Conv2d(12, 8, 3, padding=1)
        self.fc4 = nn.Linear(8 * 2 * 2, 16)
        self.fc5 = nn.Linear(16, 5)

    @staticmethod
    def lrn_per_column(x):
        # torch divides alpha by the window size; the paper (and the model file) does not.
        # The paper's net normalises each column's maps separately: one LRN per half.
        return torch.cat([F.local_response_norm(h, 5, alpha=0.01 * 5, beta=0.75, k=2.0)
                          for h in x.chunk(2, dim=1)], dim=1)

    def forward(self, x):
        x = F.max_pool2d(self.lrn_per_column(F.relu(self.conv1(x))), 3, 2)
        x = F.relu(self.conv2(x))
        x = F.avg_pool2d(F.relu(self.conv3(x)), 2, 2)
        x = F.dropout(F.relu(self.fc4(torch.flatten(x, 1))), 0.5, self.training)
        return self.fc5(x)


def logits(net, x):
    net.forward(x, until="fc5")
    return net.output("fc5")


@pytest.mark.parametrize("split", [False, True])
def test_export_to_torch(tmp_path, rng, split):
    spec = parse_model(MODEL, path="interop.toml")
    assert spec.shapes["pool3"] == (8, 2, 2)
    net = Net(spec, seed=int(rng.integers(1 << 30)), split_columns=split)
    random_params(net, rng, scale=0.3)
    path = export_weights(net, tmp_path / "weights.safetensors")
    tnet = TorchNet().eval()
    tnet.load_state_dict(st.load_file(str(path)), strict=True)
    x = (rng.standard_normal((3, 3, 23, 23)) * 20).astype(np.float32)
    with torch.no_grad():
        expected = tnet(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits(net, x), expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


def test_import_from_torch(tmp_path, rng):
    torch.manual_seed(int(rng.integers(1 << 30)))
    tnet = TorchNet().eval()
    path = tmp_path / "from_torch.safetensors"
    st.save_file({k: v.contiguous() for k, v in tnet.state_dict().items()}, str(path))
    net = Net(parse_model(MODEL, path="interop.toml"), split_columns=True)
    import_weights(net, path)
    x = (rng.standard_normal((2, 3, 23, 23)) * 20).astype(np.float32)
    with torch.no_grad():
        expected = tnet(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits(net, x), expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())
    # a torch file with a missing or misshapen tensor is refused, naming it
    sd = tnet.state_dict()
    del sd["fc4.bias"]
    st.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(ValueError, match="missing fc4.bias"):
        import_weights(net, path)
