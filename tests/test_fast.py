"""The exportable fast-mode graph (nedr.model.fast): FastNeDR keeps the input size."""
from __future__ import annotations

import pytest


def test_fast_graph_module_shapes():
    """FastNeDR keeps the input size and rejects a network size off the contract."""
    torch = pytest.importorskip("torch")
    from nedr.model.fast import FastNeDR
    from nedr.model.network import NeDR

    with pytest.raises(ValueError, match="breaks the network contract"):
        FastNeDR(NeDR(), (100, 128))

    class Identity(torch.nn.Module):  # stands in for NeDR: J = 2·I − 0.3, t = 0.5
        def predict(self, x):
            from nedr.model.network import Prediction

            return Prediction((2 * x - 0.3).clamp(0, 1), torch.full_like(x[:, :1], 0.5), x[:, :, :1, :1])

    fast = FastNeDR(NeDR(), (128, 160), with_transmission=True)
    fast.model = Identity()
    x = torch.rand(1, 3, 203, 301)
    j, t = fast(x)
    assert j.shape == (1, 3, 203, 301) and t.shape == (1, 1, 203, 301)
