import torch

from stylize.losses import content_loss, style_loss
from stylize.models import Decoder, Encoder


def test_style_loss_zero_for_same_statistics_positive_otherwise():
    torch.manual_seed(0)
    enc = Encoder()
    a = enc(torch.rand(1, 3, 32, 32))
    assert style_loss(a, a).item() == 0.0
    b = enc(torch.rand(1, 3, 32, 32) * 0.5)
    assert style_loss(a, b).item() > 0.0


def test_style_loss_ignores_spatial_arrangement():
    # mean/std matching sees distributions, not positions: a flipped image has the same statistics
    torch.manual_seed(0)
    taps = {k: torch.rand(2, 4, 8, 8) for k in ("relu1_1", "relu2_1", "relu3_1", "relu4_1")}
    flipped = {k: v.flip(-1) for k, v in taps.items()}
    assert style_loss(taps, flipped).item() < 1e-10


def test_content_loss_is_mse():
    a, b = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2) * 3
    assert content_loss(a, b).item() == 9.0


def test_gradients_reach_decoder_not_encoder():
    torch.manual_seed(0)
    enc, dec = Encoder(), Decoder()
    target = torch.rand(1, 512, 2, 2)
    out = enc(dec(target))
    loss = content_loss(out["relu4_1"], target) + style_loss(out, enc(torch.rand(1, 3, 16, 16)))
    loss.backward()
    assert all(p.grad is not None for p in dec.parameters())
    assert all(p.grad is None for p in enc.parameters())
