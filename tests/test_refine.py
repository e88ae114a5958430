import pytest
import torch
from helpers import make_image

from stylize.controls import luminance
from stylize.models import adain
from stylize.refine import refine, style_target
from stylize.stylizer import Stylizer
from stylize.training.losses import content_loss, split_stats, ssim, style_loss
from stylize.weights import load_encoder


def training_loss(encoder, content, image, stats, style_weight=10.0) -> float:
    with torch.no_grad():
        target = adain(encoder(content)["relu4_1"], *split_stats(stats)["relu4_1"])
        out = encoder(image)
        return (content_loss(out["relu4_1"], target) + style_weight * style_loss(out, stats)).item()


def test_refine_lowers_the_training_loss_and_keeps_the_picture_valid(encoder_path):
    encoder = load_encoder(encoder_path)
    content, style = make_image(48, 56, 1)[None], make_image(40, 40, 2)
    start = content.clone()  # a decoder that gives the photo back: all the style is still to paint
    stats = style_target(encoder, [style])
    out = refine(encoder, content, start, stats, steps=5)
    assert out.shape == start.shape and not out.requires_grad
    assert 0 <= out.min() and out.max() <= 1
    assert training_loss(encoder, content, out, stats) < 0.8 * training_loss(encoder, content, start, stats)
    torch.testing.assert_close(start, content)  # the picture given is not changed in place


def noisy(content: torch.Tensor, amount: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (content + amount * torch.randn(content.shape, generator=g)).clamp(0, 1)


def test_the_ssim_term_holds_the_photo_s_structure(encoder_path):
    encoder = load_encoder(encoder_path)
    content, style = make_image(48, 48, 9)[None], make_image(40, 40, 10)
    stats, start, luma = style_target(encoder, [style]), noisy(content, 0.15), luminance(content)
    free, held = (refine(encoder, content, start, stats, steps=15, ssim_weight=w) for w in (0.0, 500.0))
    assert ssim(luminance(held), luma).item() > ssim(luminance(free), luma).item() + 0.05


def test_alpha_0_pulls_towards_the_content_and_alpha_1_away(encoder_path):
    encoder = load_encoder(encoder_path)
    content, style = make_image(40, 40, 3)[None], make_image(40, 40, 4)
    start, stats = noisy(content, 0.1), style_target(encoder, [style])
    own, painted = (refine(encoder, content, start, stats, steps=10, alpha=a) for a in (0.0, 1.0))
    gap = (start - content).abs().mean()
    assert (own - content).abs().mean() < gap < (painted - content).abs().mean()


def test_mixed_painting_stats_are_the_weighted_sum(encoder_path):
    encoder = load_encoder(encoder_path)
    a, b = make_image(32, 32, 5), make_image(32, 40, 6)
    mixed = style_target(encoder, [a, b], [3, 1])
    expected = 0.75 * style_target(encoder, [a]) + 0.25 * style_target(encoder, [b])
    torch.testing.assert_close(mixed, expected)


def test_stylizer_refines_only_when_asked(encoder_path, decoder_path):
    stylizer = Stylizer.from_pretrained(encoder_path, decoder_path, device="cpu")
    content, style = make_image(40, 48, 7), make_image(40, 40, 8)
    plain = stylizer.stylize(content, style)
    torch.testing.assert_close(stylizer.stylize(content, style, refine=0), plain)
    refined = stylizer.stylize(content, style, refine=3)
    assert refined.shape == plain.shape and (refined - plain).abs().mean() > 1e-3
    both = stylizer.stylize(torch.stack([content, content]), style, refine=3)  # a batch: each refined alike
    torch.testing.assert_close(both[0], both[1])


def test_refine_needs_style_images_and_no_masks(encoder_path, decoder_path):
    stylizer = Stylizer.from_pretrained(encoder_path, decoder_path, device="cpu")
    content, style = make_image(40, 48, 7), make_image(40, 40, 8)
    with pytest.raises(ValueError, match="needs style images"):
        stylizer.stylize(content, stylizer.style_stats(style), refine=2)
    with pytest.raises(ValueError, match="not masks"):
        stylizer.stylize(content, [style, style], masks=[torch.ones(40, 48)], refine=2)
    with pytest.raises(ValueError, match="0 or more, got -1"):
        stylizer.stylize(content, style, refine=-1)


def test_a_check_that_raises_stops_the_refinement_between_steps(encoder_path, decoder_path):
    stylizer = Stylizer.from_pretrained(encoder_path, decoder_path, device="cpu")
    content, style = make_image(32, 32, 5), make_image(32, 32, 6)
    calls = []

    def check():  # as the web server's: raises once the request's client has gone
        calls.append(1)
        if len(calls) == 3:
            raise InterruptedError

    with pytest.raises(InterruptedError):
        stylizer.stylize(content, style, refine=10, check=check)
    assert len(calls) == 3  # after the encoding, then before the first two refine steps
