import pytest
import torch
from helpers import make_image

from stylize.controls import luminance
from stylize.models import Decoder, Encoder, mean_std
from stylize.training.losses import (
    STATS_SIZE,
    TAP_CHANNELS,
    content_loss,
    laplacian_loss,
    reconstruction_loss,
    split_stats,
    ssim,
    ssim_loss,
    style_loss,
    tap_stats,
)


def test_style_loss_zero_for_same_statistics_positive_otherwise():
    torch.manual_seed(0)
    enc = Encoder()
    a = enc(torch.rand(1, 3, 32, 32))
    assert style_loss(a, tap_stats(a)).item() == 0.0
    b = enc(torch.rand(1, 3, 32, 32) * 0.5)
    assert style_loss(a, tap_stats(b)).item() > 0.0


def test_style_loss_ignores_spatial_arrangement():
    # mean/std matching sees distributions, not positions: a flipped image has the same statistics
    torch.manual_seed(0)
    taps = {k: torch.rand(2, c, 8, 8) for k, c in TAP_CHANNELS.items()}
    flipped = {k: v.flip(-1) for k, v in taps.items()}
    assert style_loss(taps, tap_stats(flipped)).item() < 1e-10


def test_style_loss_sums_the_four_taps_means_and_stds():
    torch.manual_seed(0)
    a = {k: torch.rand(2, c, 4, 4) for k, c in TAP_CHANNELS.items()}
    b = {k: torch.rand(2, c, 4, 4) for k, c in TAP_CHANNELS.items()}
    want = 0
    for k in TAP_CHANNELS:
        (ma, sa), (mb, sb) = mean_std(a[k]), mean_std(b[k])
        want = want + ((ma - mb) ** 2).mean() + ((sa - sb) ** 2).mean()
    assert torch.allclose(style_loss(a, tap_stats(b)), want)


def test_tap_stats_round_trip():
    torch.manual_seed(0)
    taps = Encoder()(torch.rand(2, 3, 24, 24))
    stats = tap_stats(taps)
    assert stats.shape == (2, STATS_SIZE)
    for tap, (m, s) in split_stats(stats).items():
        assert torch.allclose(m, taps[tap].mean((2, 3), keepdim=True), atol=1e-5)
        assert torch.allclose(s, (taps[tap].var((2, 3), correction=0, keepdim=True) + 1e-5).sqrt(), atol=1e-5)


def test_reconstruction_loss_is_l1():
    assert reconstruction_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.25)).item() == 0.25


def test_content_loss_is_mse():
    a, b = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2) * 3
    assert content_loss(a, b).item() == 9.0


def test_laplacian_loss_sees_shapes_at_4_pixels_not_finer_texture():
    torch.manual_seed(0)
    photo = torch.zeros(1, 3, 32, 32)
    photo[..., 8:24, 8:24] = 1.0  # a square, its edges on the 4-pixel blocks
    assert laplacian_loss(photo, photo).item() == 0.0
    # a checkerboard of single pixels (fine strokes) averages away in 4x4 blocks
    texture = (torch.arange(32)[:, None] + torch.arange(32)).remainder(2).float() * 0.5 - 0.25
    assert laplacian_loss(photo + texture, photo).item() < 1e-12
    assert laplacian_loss(photo.roll(4, -1), photo).item() > 0.01  # the square moved: its edges differ
    assert laplacian_loss(photo + 0.3, photo).item() < 1e-12  # a colour shift has no edges


def test_ssim_is_one_for_the_same_image_and_falls_with_damage():
    y = luminance(make_image(48, 40, 1))[None]
    assert ssim(y, y).item() == pytest.approx(1.0, abs=1e-6)
    noisy = (y + 0.1 * torch.randn_like(y)).clamp(0, 1)
    assert 0.2 < ssim(noisy, y).item() < 0.95
    assert ssim(torch.full_like(y, 0.5), y).item() < 0.2


def test_ssim_loss_holds_the_photo_s_luminance_structure_not_its_colours():
    torch.manual_seed(0)
    photo = make_image(40, 48, 2)[None]
    assert ssim_loss(photo, photo).item() == pytest.approx(0.0, abs=1e-6)
    recoloured = photo + torch.tensor([0.3, -0.1, -0.3])[:, None, None] * 0.3  # about the same luminance
    assert ssim_loss(recoloured, photo).item() < 0.01
    out = photo.flip(-1).requires_grad_(True)  # its shapes moved
    loss = ssim_loss(out, photo)
    loss.backward()
    assert loss.item() > 0.2 and out.grad.abs().sum() > 0


def test_gradients_reach_decoder_not_encoder():
    torch.manual_seed(0)
    enc, dec = Encoder(), Decoder()
    target = torch.rand(1, 512, 2, 2)
    out = enc(dec(target))
    loss = content_loss(out["relu4_1"], target) + style_loss(out, tap_stats(enc(torch.rand(1, 3, 16, 16))))
    loss.backward()
    assert all(p.grad is not None for p in dec.parameters())
    assert all(p.grad is None for p in enc.parameters())
