"""IDRM (`nrn`): the conv form against a literal LIIF-style evaluation (docs/model.md §5).

The literal evaluation below follows the public INR code step by step (it is NeRD-Rain's `INR`,
which NeDR reuses with a 32-channel output): 3×3 feature unfold, pixel-centre coordinates with a
4-frequency sinusoidal encoding, a 4-member local ensemble with the ±half-pixel eps shift, cell
decoding and area weights. Two details of that code make the conv form exact, and the test computes
them rather than assuming them:

* the ensemble member's feature is the unfolded feature at the query's own pixel (the shifted
  coordinate `coord_` is computed but never used to sample), and its `q_coord` is the feature-grid
  pixel centre, i.e. the query coordinate itself;
* `rel_coord = coord − q_coord` is taken between the *encoded* coordinates
  ([y, x, enc(y, x)] for both), so all 18 columns 288..305 are exactly 0 (not sin/cos of 0), and
  every area is 1e-9, giving weights 0.25.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from nedr.model.decoder import IDRM

L_FREQ = 4


def make_coord(shape):
    """Pixel-centre coordinates in [−1, 1] (LIIF's make_coord): H×W×2 as (y, x)."""
    seqs = [-1 + (2 * torch.arange(n, dtype=torch.float32) + 1) / n for n in shape]
    return torch.stack(torch.meshgrid(*seqs, indexing="ij"), dim=-1)


def positional_encoding(c, L=L_FREQ):
    """[sin(2^l π c), cos(2^l π c)] per coordinate: 2 coords × 2 × L = 16 columns."""
    freq = 2 ** torch.arange(L, dtype=torch.float32) * math.pi
    spectrum = c[..., None] * freq
    enc = torch.stack([spectrum.sin(), spectrum.cos()], dim=-2)
    return enc.reshape(*c.shape[:-1], -1)


def liif_literal(idrm: IDRM, feat: torch.Tensor, sample_at_shift: bool = False):
    """LIIF-style query of every feature-grid pixel centre, MLP evaluated per query and member.

    Returns the N×32×H×W output and, per ensemble member, its (MLP input, weight).

    sample_at_shift=True instead samples feature and q_coord (grid_sample, nearest) at the
    shifted coordinate, as textbook LIIF does; only used to show that the test discriminates.
    """
    b, c, h, w = feat.shape
    unf = F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)  # channel c·9 + ky·3 + kx
    coord = make_coord((h, w)).view(1, h * w, 2).expand(b, -1, -1)  # queries = pixel centres
    coord = torch.cat([coord, positional_encoding(coord)], dim=-1)  # 18 columns
    cell = torch.ones(b, h * w, 2)
    cell[..., 0] *= 2 / h
    cell[..., 1] *= 2 / w
    feat_coord = make_coord((h, w)).permute(2, 0, 1)[None].expand(b, 2, h, w)
    rx, ry, eps_shift = 2 / h / 2, 2 / w / 2, 1e-6

    preds, areas, inputs = [], [], []
    for vx in (-1, 1):
        for vy in (-1, 1):
            coord_ = coord[..., :2].clone()
            coord_[..., 0] += vx * rx + eps_shift
            coord_[..., 1] += vy * ry + eps_shift
            coord_.clamp_(-1 + 1e-6, 1 - 1e-6)
            if sample_at_shift:
                grid = coord_.flip(-1)[:, None]  # grid_sample wants (x, y)
                q_feat = F.grid_sample(unf, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
                q_xy = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
            else:  # the public code: the query's own pixel, q_coord = its pixel centre
                q_feat = unf.reshape(b, c * 9, -1).permute(0, 2, 1)
                q_xy = feat_coord.reshape(b, 2, -1).permute(0, 2, 1)
            q_coord = torch.cat([q_xy, positional_encoding(q_xy)], dim=-1)
            rel_coord = coord - q_coord
            rel_coord[..., 0] *= h
            rel_coord[..., 1] *= w
            rel_cell = cell.clone()
            rel_cell[..., 0] *= h
            rel_cell[..., 1] *= w
            inp = torch.cat([q_feat, rel_coord, rel_cell], dim=-1)
            assert inp.shape[-1] == 308
            pred = idrm.imnet.layers(inp.reshape(b * h * w, -1)).view(b, h * w, -1)
            preds.append(pred)
            areas.append(torch.abs(rel_coord[..., 0] * rel_coord[..., 1]) + 1e-9)
            inputs.append(inp)
    tot = torch.stack(areas).sum(dim=0)
    areas[0], areas[3] = areas[3], areas[0]
    areas[1], areas[2] = areas[2], areas[1]
    weights = [a / tot for a in areas]
    ret = sum(p * wt[..., None] for p, wt in zip(preds, weights))
    return ret.view(b, h, w, -1).permute(0, 3, 1, 2), list(zip(inputs, weights))


@pytest.fixture(scope="module")
def idrm():
    torch.manual_seed(7)
    m = IDRM()
    with torch.no_grad():  # random weights everywhere, biases included, of a realistic size
        for layer in m.imnet.layers[0::2]:
            layer.weight.normal_(0, 1 / math.sqrt(layer.in_features))
            layer.bias.normal_(0, 0.1)
    return m.eval()


@pytest.mark.parametrize("shape", [(2, 32, 9, 11), (1, 32, 16, 13)])
def test_conv_form_equals_literal_liif(idrm, shape):
    torch.manual_seed(sum(shape))
    feat = torch.randn(shape)
    with torch.no_grad():
        got = idrm(feat)
        want, members = liif_literal(idrm, feat)
    assert got.shape == want.shape == (shape[0], 32, shape[2], shape[3])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    # the cancellations the conv form relies on, computed by the literal path
    assert len(members) == 4
    for inp, weight in members:
        assert torch.equal(inp[..., 288:306], torch.zeros_like(inp[..., 288:306]))  # rel coords + encoding
        torch.testing.assert_close(inp[..., 306:308], torch.full_like(inp[..., 306:308], 2.0))  # cell (2, 2)
        torch.testing.assert_close(weight, torch.full_like(weight, 0.25))  # equal ensemble weights
        assert torch.equal(inp, members[0][0])  # the four members coincide


def test_literal_reference_is_sensitive(idrm):
    """The comparison would catch a conv form that dropped the cell term, mis-ordered the unfold,
    or ignored columns the literal path feeds; and the public-code sampling matters."""
    torch.manual_seed(1)
    feat = torch.randn(1, 32, 8, 10)
    with torch.no_grad():
        want, _ = liif_literal(idrm, feat)
        textbook, _ = liif_literal(idrm, feat, sample_at_shift=True)
        first = idrm.imnet.layers[0]
        w1 = first.weight[:, :288].reshape(256, 32, 3, 3)
        no_cell = F.relu(F.conv2d(feat, w1, first.bias, padding=1))
        transposed = F.relu(F.conv2d(feat, w1.transpose(2, 3),
                                     first.bias + 2 * first.weight[:, 306] + 2 * first.weight[:, 307], padding=1))
        tail = idrm.imnet.layers[1:]

        def finish(y):
            return tail(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    assert (finish(no_cell) - want).abs().max() > 1e-2
    assert (finish(transposed) - want).abs().max() > 1e-2
    assert (textbook - want).abs().max() > 1e-2


def test_idrm_keeps_public_linear_layout():
    sd = IDRM().state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "imnet.layers.0.weight": (256, 308), "imnet.layers.0.bias": (256,),
        "imnet.layers.2.weight": (256, 256), "imnet.layers.2.bias": (256,),
        "imnet.layers.4.weight": (256, 256), "imnet.layers.4.bias": (256,),
        "imnet.layers.6.weight": (32, 256), "imnet.layers.6.bias": (32,),
    }
