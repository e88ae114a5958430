import pytest
import torch
from helpers import make_image

from stylize.controls import (
    _weighted_mean_std,
    coral,
    gray_matched,
    keep_chroma,
    luminance,
    masked_adain,
    mix_stats,
    normalise_weights,
    region_weights,
)
from stylize.models import SKIP_CAP, TapAdain, adain, adain_maps, mean_std
from stylize.stylizer import Stylizer


@pytest.fixture
def stylizer(encoder_path, decoder_path) -> Stylizer:
    return Stylizer.from_pretrained(encoder_path, decoder_path, device="cpu")


def halves(h: int, w: int) -> torch.Tensor:
    """A mask: white on the left half."""
    m = torch.zeros(h, w)
    m[:, : w // 2] = 1
    return m


def test_weights_are_normalised_and_bad_ones_are_clear_errors():
    assert normalise_weights([2, 1], 2) == pytest.approx([2 / 3, 1 / 3])
    assert normalise_weights([0, 3], 2) == [0, 1]
    with pytest.raises(ValueError, match="must be zero or positive, got -1"):
        normalise_weights([1, -1], 2)
    with pytest.raises(ValueError, match="all zero"):
        normalise_weights([0, 0], 2)
    with pytest.raises(ValueError, match="got 1 style weights for 2 styles"):
        normalise_weights([1], 2)
    with pytest.raises(ValueError, match="zero or positive, got nan"):
        normalise_weights([float("nan"), 1], 2)


def test_mixed_stats_equal_the_mix_of_adain_outputs():
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 8, 6, 5, generator=g)
    stats = [mean_std(torch.rand(1, 8, 4, 4, generator=g) * k) for k in (1, 3)]
    mixed = adain(feats, *mix_stats(stats, [3, 1]))
    expected = 0.75 * adain(feats, *stats[0]) + 0.25 * adain(feats, *stats[1])
    torch.testing.assert_close(mixed, expected)


def test_coral_gives_the_target_colour_mean_and_covariance():
    source, target = make_image(40, 48, 1), 0.3 + 0.4 * make_image(36, 40, 2)
    out = coral(source, target)
    assert out.shape == source.shape
    flat, want = out.reshape(3, -1), target.reshape(3, -1)
    torch.testing.assert_close(flat.mean(1), want.mean(1), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(flat), torch.cov(want), atol=2e-3, rtol=0)


def test_keep_chroma_takes_luminance_from_the_stylized_image_only():
    content = 0.3 + 0.4 * make_image(32, 32, 1)  # mid-range: no clamping
    gray = (0.4 + 0.2 * make_image(32, 32, 2).mean(0, keepdim=True)).expand(3, -1, -1)
    out = keep_chroma(content, gray)
    torch.testing.assert_close(luminance(out), luminance(gray))
    torch.testing.assert_close(out - luminance(out), content - luminance(content))


def test_region_weights_full_empty_and_complement():
    h, w, grid = 64, 64, (8, 8)
    full = region_weights(torch.ones(1, h, w), grid, 1)
    assert full.shape == (1, 1, 8, 8) and torch.allclose(full, torch.ones_like(full))
    assert region_weights(torch.zeros(1, h, w), grid, 1).abs().max() == 0
    two = region_weights(halves(h, w)[None], grid, 2)  # one mask for two styles: the last fills the rest
    assert two.shape == (2, 1, 8, 8)
    torch.testing.assert_close(two.sum(0), torch.ones(1, 8, 8))
    row = two[0, 0, 4]
    assert row[0] == pytest.approx(1, abs=1e-3) and row[-1] == pytest.approx(0, abs=1e-3)
    assert (row[1:] <= row[:-1] + 1e-6).all() and ((row > 0.05) & (row < 0.95)).sum() >= 2  # a soft ramp
    overlap = region_weights(torch.ones(2, h, w), grid, 2)
    torch.testing.assert_close(overlap, torch.full_like(overlap, 0.5))  # overlapping masks share
    with pytest.raises(ValueError, match="3 masks for 2 styles"):
        region_weights(torch.ones(3, h, w), grid, 2)


def test_masks_that_cover_everything_or_nothing(stylizer):
    content, style = make_image(40, 48, 1), make_image(40, 40, 2)
    plain = stylizer.stylize(content, style)
    torch.testing.assert_close(stylizer.stylize(content, [style], masks=[torch.ones(40, 48)]), plain)
    nothing = stylizer.stylize(content, [style], masks=[torch.zeros(40, 48)])
    torch.testing.assert_close(nothing, stylizer.stylize(content, style, alpha=0.0))


def test_each_region_takes_its_own_style(stylizer):
    content, a, b = make_image(48, 64, 1), make_image(40, 40, 2), 1 - make_image(40, 40, 3)
    out = stylizer.stylize(content, [a, b], masks=[halves(48, 64)])
    assert out.shape == content.shape
    torch.testing.assert_close(out, stylizer.stylize(content, [a, b], masks=[halves(48, 64), 1 - halves(48, 64)]))
    only_a, only_b = stylizer.stylize(content, a), stylizer.stylize(content, b)
    left, right = (slice(None), slice(None), slice(0, 24)), (slice(None), slice(None), slice(40, 64))
    assert (out[left] - only_a[left]).abs().mean() < (out[left] - only_b[left]).abs().mean()
    assert (out[right] - only_b[right]).abs().mean() < (out[right] - only_a[right]).abs().mean()


def test_style_weights_in_the_api(stylizer):
    content, a, b = make_image(32, 40, 1), make_image(32, 32, 2), make_image(32, 32, 3)
    torch.testing.assert_close(stylizer.stylize(content, [a, b], weights=[1, 0]), stylizer.stylize(content, a))
    mixed = stylizer.stylize(content, [a, b], weights=[2, 2])
    torch.testing.assert_close(mixed, stylizer.stylize(content, stylizer.mix([a, b])))
    with pytest.raises(ValueError, match="zero or positive"):
        stylizer.stylize(content, [a, b], weights=[1, -2])
    with pytest.raises(ValueError, match="use one"):
        stylizer.stylize(content, [a, b], weights=[1, 1], masks=[halves(32, 40)])


def test_preserve_color(stylizer):
    content, style = 0.3 + 0.4 * make_image(32, 40, 1), make_image(32, 32, 2)
    shipped = Stylizer.from_pretrained(device="cpu")  # a random decoder's output is mostly clipped
    lum = shipped.stylize(content, style, preserve_color="luminance")
    assert lum.shape == content.shape
    inside = ((lum > 0) & (lum < 1)).all(0)  # where the result was not clipped to [0, 1]
    chroma_err = ((lum - luminance(lum)) - (content - luminance(content))).abs()[:, inside]
    assert inside.float().mean() > 0.3 and chroma_err.max() < 1e-5, (inside.float().mean(), chroma_err.max())
    # the brightness is the stylized luminance: that of the grey content painted in the grey painting
    y = luminance(content)
    gray = shipped.stylize(y.expand(3, -1, -1), gray_matched(style, y))
    torch.testing.assert_close(luminance(lum)[:, inside], luminance(gray)[:, inside], rtol=0, atol=1e-5)
    assert (luminance(gray) - y).abs().mean() > 0.01  # and it is not the content's own
    torch.testing.assert_close(
        stylizer.stylize(content, style, preserve_color="coral"), stylizer.stylize(content, coral(style, content))
    )
    batch = stylizer.stylize(torch.stack([content, content.flip(-1)]), style, preserve_color="coral")
    assert batch.shape == (2, 3, 32, 40)
    with pytest.raises(ValueError, match="needs the style images, not StyleStats"):
        stylizer.stylize(content, stylizer.style_stats(style), preserve_color="coral")
    with pytest.raises(ValueError, match="preserve_color must be one of coral, luminance"):
        stylizer.stylize(content, style, preserve_color="hue")


def test_tap_adain_computes_what_adain_and_masked_adain_do():
    torch.manual_seed(0)
    f = torch.rand(2, 6, 9, 11) * 3
    f[:, 2] = 0.0
    f[0, 2, 4, 1], f[1, 2, 3, 9] = 50.0, 40.0  # a quiet channel firing at one pixel: past the cap
    styles = [(torch.rand(1, 6, 1, 1), torch.rand(1, 6, 1, 1) + 0.5) for _ in range(2)]
    plain = TapAdain.of([mean_std(f)], [styles[0]], 0.7, cap=SKIP_CAP)
    torch.testing.assert_close(plain(f), adain(f, *styles[0], 0.7, cap=SKIP_CAP), rtol=1e-5, atol=1e-5)
    uncapped = TapAdain.of([mean_std(f)], [styles[0]], 0.7)  # uncapped unless told
    torch.testing.assert_close(uncapped(f), adain(f, *styles[0], 0.7), rtol=1e-5, atol=1e-5)
    assert (uncapped(f) - plain(f)).abs().max() > 1.0
    w = torch.zeros(2, 1, 9, 11)
    w[0, :, :, :5], w[1, :, :, 7:] = 1.0, 0.6  # two regions, and a gap that keeps the content
    regions = [_weighted_mean_std(f, wk) for wk in w]
    masked = TapAdain.of(regions, styles, 0.7, cap=3.0)
    torch.testing.assert_close(masked(f, w), masked_adain(f, styles, w, 0.7, cap=3.0), rtol=1e-5, atol=1e-5)


def test_a_pair_is_painted_with_the_skip_taps_capped_and_relu4_1_not():
    torch.manual_seed(0)
    f = torch.rand(1, 6, 9, 11)
    f[0, 2, 4, 1] = 50.0  # past any cap
    own, style = mean_std(f), (torch.rand(1, 6, 1, 1), torch.rand(1, 6, 1, 1) + 0.5)
    maps = adain_maps({"relu4_1": own, "relu2_1": own}, {"relu4_1": style, "relu2_1": style}, 0.9)
    torch.testing.assert_close(maps["relu4_1"](f), adain(f, *style, 0.9), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps["relu2_1"](f), adain(f, *style, 0.9, cap=SKIP_CAP), rtol=1e-5, atol=1e-5)
    loose = adain_maps({"relu2_1": own}, {"relu2_1": style}, 0.9, cap=None)  # as training's loss paints
    torch.testing.assert_close(loose["relu2_1"](f), adain(f, *style, 0.9), rtol=1e-5, atol=1e-5)
