"""KAN-CID: the closed-form cubic B-spline path against a plain Cox–de Boor recursion (docs/model.md §4)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nedr.model.kan import KANCID, KANLinear

# The 12 uniform knots t_k = −1 + (k − 3)·0.4, k = 0..11, i.e. −2.2 … 2.2 (exact, in float64).
KNOTS = -1.0 + (np.arange(12) - 3) * 0.4
ORDER = 3
NUM_BASES = len(KNOTS) - ORDER - 1  # 8


def cox_de_boor(x: np.ndarray, knots: np.ndarray = KNOTS, order: int = ORDER) -> np.ndarray:
    """B_j(x) for j = 0..len(knots)-order-2 by the textbook recursion, in float64; shape x.shape + (8,).

    Order 0 uses half-open intervals [t_k, t_k+1); every higher order is the usual convex
    combination of two lower-order bases. No closed form, no symmetry tricks.
    """
    x = np.asarray(x, dtype=np.float64)[..., None]
    t = np.asarray(knots, dtype=np.float64)
    bases = ((x >= t[:-1]) & (x < t[1:])).astype(np.float64)  # 11 order-0 bases
    for p in range(1, order + 1):
        n = len(t) - p - 1
        new = np.zeros(x.shape[:-1] + (n,))
        for j in range(n):
            left = (x[..., 0] - t[j]) / (t[j + p] - t[j]) * bases[..., j]
            right = (t[j + p + 1] - x[..., 0]) / (t[j + p + 1] - t[j + 1]) * bases[..., j + 1]
            new[..., j] = left + right
        bases = new
    return bases


def _random_inputs(shape, seed, far=100.0):
    """Values inside and well outside [−2.2, 2.2], plus the knots themselves and far-out points."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g) * 8.0 - 4.0)  # U(−4, 4): ~45 % outside the knot span
    flat = x.view(-1)
    specials = torch.tensor(list(KNOTS) + [-far, -2.2001, -2.1999, 2.1999, 2.2001, far, 0.0],
                            dtype=torch.float32)
    flat[: len(specials)] = specials
    return x


def test_reference_recursion_is_a_cubic_bspline_basis():
    """Sanity of the test's own reference: partition of unity on [t_3, t_8] = [−1, 1], zero outside
    [−2.2, 2.2], non-negative, each B_j supported on [t_j, t_j+4]."""
    x = np.linspace(-3.0, 3.0, 6001)
    b = cox_de_boor(x)
    assert b.shape == (6001, NUM_BASES)
    assert (b >= 0).all()
    inside = (x >= -1.0) & (x <= 1.0)
    np.testing.assert_allclose(b[inside].sum(axis=1), 1.0, atol=1e-12)
    assert (b[(x < -2.2) | (x > 2.2)] == 0).all()
    for j in range(NUM_BASES):
        outside = (x < KNOTS[j]) | (x > KNOTS[j + 4])
        assert (b[outside, j] == 0).all()
    # cubic B-spline value at the centre of its support is 2/3
    np.testing.assert_allclose(cox_de_boor(np.array([KNOTS[0] + 0.8]))[0, 0], 2.0 / 3.0, rtol=1e-12)


def test_grid_buffer_is_the_uniform_knots():
    layer = KANLinear(5, 3)
    assert layer.grid.shape == (5, 12)
    np.testing.assert_allclose(layer.grid.numpy(), np.broadcast_to(KNOTS, (5, 12)), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_closed_form_bases_equal_cox_de_boor(seed):
    cin = 16
    layer = KANLinear(cin, cin)
    x = _random_inputs((2, cin, 7, 9), seed)
    assert (x.abs() > 2.2).float().mean() > 0.3 and (x.abs() < 2.2).float().mean() > 0.3
    with torch.no_grad():
        got = layer.bases(x)  # N × (8·C) × H × W, channel i·8 + j
    assert got.shape == (2, cin * NUM_BASES, 7, 9)
    got = got.view(2, cin, NUM_BASES, 7, 9).permute(0, 1, 3, 4, 2).double().numpy()
    want = cox_de_boor(x.double().numpy())  # N × C × H × W × 8
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # the comparison is not vacuous: plenty of non-zero bases, and zeros outside the span
    assert (want > 1e-3).sum() > 1000
    outside = np.abs(x.numpy()) > 2.2
    assert np.abs(got[outside]).max() == 0.0


def _randomise(layer: KANLinear, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.base_weight.copy_(torch.randn(layer.base_weight.shape, generator=g) * 0.3)
        layer.spline_weight.copy_(torch.randn(layer.spline_weight.shape, generator=g) * 0.3)
        layer.spline_scaler.copy_(torch.rand(layer.spline_scaler.shape, generator=g) * 1.5 + 0.25)


def efficient_kan_reference(x: np.ndarray, base_weight, spline_weight, spline_scaler) -> np.ndarray:
    """efficient-KAN's forward on a (B·H·W, C) matrix, in float64 with Cox–de Boor bases."""
    silu = x / (1.0 + np.exp(-x))
    bases = cox_de_boor(x).reshape(x.shape[0], -1)  # column i·8 + j
    scaled = (spline_weight * spline_scaler[..., None]).reshape(spline_weight.shape[0], -1)
    return silu @ base_weight.T + bases @ scaled.T


@pytest.mark.parametrize("cin,cout", [(32, 32), (24, 40)])
def test_kanlinear_forward_equals_efficient_kan(cin, cout):
    layer = KANLinear(cin, cout)
    _randomise(layer, seed=cin + cout)
    x = _random_inputs((2, cin, 6, 5), seed=cout, far=6.0)  # SiLU(100) would make atol meaningless
    with torch.no_grad():
        got = layer(x)  # N × cout × H × W
    assert got.shape == (2, cout, 6, 5)
    mat = x.permute(0, 2, 3, 1).reshape(-1, cin).double().numpy()  # (B·H·W, C)
    want = efficient_kan_reference(mat, layer.base_weight.detach().double().numpy(),
                                   layer.spline_weight.detach().double().numpy(),
                                   layer.spline_scaler.detach().double().numpy())
    got_mat = got.permute(0, 2, 3, 1).reshape(-1, cout).double().numpy()
    np.testing.assert_allclose(got_mat, want, rtol=0, atol=1e-5)
    assert np.abs(want).mean() > 0.1  # outputs of a meaningful size


def test_kancid_block_is_dwconv_then_kan_gelu_kan():
    """The whole KAN-CID block per §4: reflect-padded depthwise 7×7, then per pixel fc1 → GELU → fc2."""
    c = 32
    torch.manual_seed(3)
    block = KANCID(c)
    _randomise(block.channel_dependent.fc1, 11)
    _randomise(block.channel_dependent.fc2, 12)
    x = torch.randn(1, c, 9, 10)
    with torch.no_grad():
        got = block(x)
        dw = block.channel_independent.dconv
        y = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), dw.weight, dw.bias, groups=c)
    mat = y.permute(0, 2, 3, 1).reshape(-1, c).double().numpy()
    fc1, fc2 = block.channel_dependent.fc1, block.channel_dependent.fc2
    args1 = [p.detach().double().numpy() for p in (fc1.base_weight, fc1.spline_weight, fc1.spline_scaler)]
    args2 = [p.detach().double().numpy() for p in (fc2.base_weight, fc2.spline_weight, fc2.spline_scaler)]
    h = efficient_kan_reference(mat, *args1)
    h = torch.nn.functional.gelu(torch.from_numpy(h)).numpy()  # exact (erf) GELU
    want = efficient_kan_reference(h, *args2)
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).reshape(-1, c).double().numpy(), want,
                               rtol=0, atol=1e-4)
