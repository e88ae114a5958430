import pytest
import torch
from helpers import make_image, write_clip

from stylize.models import Decoder, mean_std
from stylize.stylizer import Stylizer
from stylize.video import Flicker, Temporal, smooth_stats, stylize_frames, stylize_video
from stylize.weights import load_encoder


@pytest.fixture
def stylizer(encoder_path, decoder_path) -> Stylizer:
    return Stylizer.from_pretrained(encoder_path, decoder_path, device="cpu")


def test_flicker_is_the_mean_frame_to_frame_change_across_batches():
    frames = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.5, 0.5, 0.2)])
    f = Flicker()
    f.add(frames[:1])
    f.add(frames[1:])
    assert f.value == pytest.approx((0.5 + 0 + 0.3) / 3)


def test_smooth_stats_zero_is_per_frame_and_higher_follows_slowly():
    feats = torch.rand(3, 4, 5, 5) * torch.tensor([1.0, 2.0, 3.0])[:, None, None, None]
    (mean, std), _ = smooth_stats(mean_std(feats), None, 0.0)
    torch.testing.assert_close((mean, std), mean_std(feats))
    (mean, _), state = smooth_stats(mean_std(feats), None, 0.5)
    m = mean_std(feats)[0]
    torch.testing.assert_close(mean[2], 0.25 * m[0] + 0.25 * m[1] + 0.5 * m[2])
    torch.testing.assert_close(state[0][0], mean[2])


@pytest.mark.parametrize("skips", [False, True])
def test_batches_carry_state_so_batch_size_does_not_change_the_result(stylizer, encoder_path, skips):
    if skips:  # every tap's statistics carried, relu4_1's and the skips'
        dec = Decoder(("relu3_1", "relu2_1"))
        for p in dec.parameters():
            torch.nn.init.normal_(p, std=0.05)
        stylizer = Stylizer(load_encoder(encoder_path), dec, "cpu")
    frames = torch.stack([make_image(32, 32, i % 2) for i in range(5)])
    style = stylizer.style_stats(make_image(32, 32, 9))
    whole = stylize_frames(stylizer, frames, style, 1.0, 0.8, Temporal())
    t = Temporal()
    parts = torch.cat([stylize_frames(stylizer, frames[i : i + 2], style, 1.0, 0.8, t) for i in range(0, 5, 2)])
    # (random skips amplify the convolutions' rounding, which differs with the batch size)
    torch.testing.assert_close(parts, whole, **({"atol": 1e-3, "rtol": 0} if skips else {}))


def test_smoothing_reduces_flicker_below_the_per_frame_run(stylizer, tmp_path):
    pytest.importorskip("av")
    clip = write_clip(tmp_path / "clip.mp4", frames=8, h=32, w=48, audio=False)
    style = stylizer.style_stats(make_image(40, 40, 4))
    naive = stylize_video(stylizer, clip, tmp_path / "a.mp4", style, smoothing=0.0, progress=False)
    steady = stylize_video(stylizer, clip, tmp_path / "b.mp4", style, smoothing=0.8, progress=False)
    assert naive.frames == steady.frames == 8 and naive.audio == "none"
    assert naive.input_flicker == steady.input_flicker > 0
    assert steady.output_flicker < 0.8 * naive.output_flicker, (steady, naive)
