import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stylize import engine, memory
from stylize.engine import Engine, interleave, upconv_weight
from stylize.models import Decoder, Encoder, TapAdain, mean_std
from stylize.stylizer import Stylizer

CPU = torch.device("cpu")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


ALL_SKIPS = ("relu1_1", "relu2_1", "relu3_1")


def nets(seed: int = 0, skip_taps: tuple[str, ...] = ()) -> tuple[Encoder, Decoder]:
    torch.manual_seed(seed)
    enc, dec = Encoder(), Decoder(skip_taps)
    if skip_taps:  # skips start at zero: give them weights, so that they count
        for p in dec.skips.parameters():
            nn.init.normal_(p, std=0.1)
    return enc, dec


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("hw", [(5, 7), (8, 8), (1, 3)])
def test_upsampling_then_conv_equals_the_two_by_two_phase_conv(hw, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, padding_mode="reflect")
    x = torch.randn(2, 6, *hw)
    want = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), upconv_weight(conv.weight), conv.bias.repeat(4))
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    got = interleave(y, *hw)
    assert got.shape == want.shape
    assert rel_err(got, want) < 1e-5
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last


def skip_adain(taps: dict[str, torch.Tensor], skip_taps: tuple[str, ...], alpha: float = 0.8, cap: float | None = None):
    """AdaIN at each skip tap towards made-up style statistics."""
    style = {t: (mean_std(taps[t])[0] + 0.3, mean_std(taps[t])[1] * 2) for t in skip_taps}
    return {t: TapAdain.of([mean_std(taps[t])], [style[t]], alpha, cap) for t in skip_taps}


@pytest.mark.parametrize(("alpha", "cap"), [(0.8, None), (1.0, 1.5), (0.8, 1.5)])
@pytest.mark.parametrize("skip_taps", [(), ALL_SKIPS])
@pytest.mark.parametrize("nnpack", [True, False])
def test_engine_computes_what_the_training_networks_compute(nnpack, skip_taps, alpha, cap):
    if nnpack and not engine.nnpack_works():
        pytest.skip("this torch has no working NNPACK")
    enc, dec = nets(0, skip_taps)
    eng = Engine(enc, dec, CPU)
    for layer in (*eng.enc, *eng.dec):
        layer.nnpack = nnpack
    x = torch.rand(2, 3, 96, 128)  # large enough for NNPACK in the first layers and the last ones
    with torch.no_grad():
        taps = enc(x)
        feats, stats, kept = eng.encode(x)
        assert rel_err(feats, taps["relu4_1"]) < 1e-4
        assert set(stats) == set(skip_taps)
        for tap, (mean, std) in stats.items():
            assert rel_err(mean, mean_std(taps[tap])[0]) < 1e-4 and rel_err(std, mean_std(taps[tap])[1]) < 1e-4
        if skip_taps:  # one tile: the taps come back for decoding
            assert set(kept) == set(skip_taps) and all(rel_err(kept[t], taps[t]) < 1e-4 for t in skip_taps)
        else:
            assert kept is None
        maps = skip_adain(taps, skip_taps, alpha, cap)  # a cap of 1.5 stds bites into every channel
        want = dec(taps["relu4_1"], {t: maps[t](taps[t]) for t in skip_taps})
        assert rel_err(eng.decode(feats, x, maps), want) < 1e-4
        assert rel_err(eng.decode(feats, x, maps, taps=kept), want) < 1e-4


@pytest.mark.parametrize("skip_taps", [(), ALL_SKIPS])
def test_tiles_give_the_numbers_of_one_pass(skip_taps):
    enc, dec = nets(1, skip_taps)
    whole, tiles = Engine(enc, dec, CPU, tile=4096), Engine(enc, dec, CPU, tile=64)
    x = torch.rand(1, 3, 200, 136)  # 4 x 3 tiles of ~64 px, uneven last ones
    feats, stats, kept = whole.encode(x)
    tiled_feats, tiled_stats, tiled_kept = tiles.encode(x)
    assert rel_err(tiled_feats, feats) < 1e-4
    assert tiled_kept is None  # a large image's taps are never held whole
    for tap in skip_taps:
        assert all(rel_err(a, b) < 1e-5 for a, b in zip(tiled_stats[tap], stats[tap]))
    maps = skip_adain(enc(x), skip_taps)
    assert rel_err(tiles.decode(feats, x, maps), whole.decode(feats, x, maps, taps=kept)) < 1e-4


def test_skips_with_masks_in_tiles_give_the_numbers_of_one_pass():
    enc, dec = nets(3, ALL_SKIPS)
    whole, tiles = Stylizer(enc, dec, CPU, tile=4096), Stylizer(enc, dec, CPU, tile=64)
    x, styles = torch.rand(3, 200, 136), [torch.rand(3, 48, 48), torch.rand(3, 40, 56)]
    mask = torch.zeros(200, 136)
    mask[:, :60] = 1
    a, b = (s.stylize(x, styles, 0.9, masks=[mask]) for s in (whole, tiles))
    assert (a - b).abs().max() < 1e-4


def test_spans_cover_the_size_on_the_grid():
    for size, tile, step in [(1030, 1024, 64), (4096, 1024, 64), (25, 8, 8), (7, 8, 8)]:
        spans = engine._spans(size, tile, step)
        assert spans[0][0] == 0 and spans[-1][1] == size
        assert all(a == prev_end for (a, _), (_, prev_end) in zip(spans[1:], spans))
        assert all(a % step == 0 and b - a <= tile + step for a, b in spans)


def test_a_shape_nnpack_refuses_falls_back_to_the_native_convolution(monkeypatch):
    enc, dec = nets()
    eng = Engine(enc, dec, CPU)
    for layer in (*eng.enc, *eng.dec):
        layer.nnpack = True

    def refuse(*args):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed")

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", refuse)
    x = torch.rand(1, 3, 64, 64)
    assert rel_err(eng.encode(x)[0], enc.relu4_1(x)) < 1e-4
    assert not eng.enc[0].nnpack


@pytest.mark.parametrize("skip_taps", [(), ALL_SKIPS])
def test_a_content_encoded_once_paints_as_the_image_does(skip_taps):
    stylizer = Stylizer(*nets(0, skip_taps), CPU)
    content, style = torch.rand(3, 37, 45), torch.rand(3, 32, 32)
    stats = stylizer.style_stats(style)
    encoded = stylizer.encode(content)
    for alpha in (1.0, 0.5):
        assert torch.equal(stylizer.stylize(encoded, stats, alpha), stylizer.stylize(content, stats, alpha))
    assert stylizer.stylize(encoded, style, preserve_color="luminance").shape == content.shape


def test_bf16_as_on_cuda_stays_near_the_fp32_picture():
    enc, dec = nets(2)
    x = torch.rand(1, 3, 64, 80)
    fp32, bf16 = Engine(enc, dec, CPU), Engine(enc, dec, CPU, dtype=torch.bfloat16)
    feats = bf16.encode(x)[0]
    assert feats.dtype == torch.bfloat16 and bf16.decode(feats).dtype == torch.float32
    assert rel_err(feats, fp32.encode(x)[0]) < 3e-2
    assert rel_err(bf16.decode(feats), fp32.decode(feats.float())) < 3e-2


def test_stylize_nnpack_0_turns_nnpack_off(monkeypatch):
    monkeypatch.setenv("STYLIZE_NNPACK", "0")
    assert not engine.nnpack_works()
    eng = Engine(*nets(), CPU)
    assert not any(layer.nnpack for layer in eng.enc) and eng.memory_format == torch.channels_last


def test_freed_memory_is_kept_for_one_tile_images_and_handed_back_for_tiled_ones():
    enc, dec = nets(4, ALL_SKIPS)
    eng = Engine(enc, dec, CPU, tile=64)
    eng.encode(torch.rand(1, 3, 64, 64))
    assert memory._keeping  # malloc reuses the freed blocks: no page faults for each layer's output
    eng.encode(torch.rand(1, 3, 128, 64))
    assert not memory._keeping  # tiles: malloc's own way, which keeps the peak low


@pytest.mark.parametrize("hw", [(5, 7), (32, 24)])
def test_few_outputs_conv_is_the_reflection_padded_convolution(hw):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 3, 3, padding=1, padding_mode="reflect")
    x = torch.randn(2, 8, *hw)
    with torch.no_grad():
        assert rel_err(engine.few_outputs_conv(x, conv.weight, conv.bias), conv(x)) < 1e-5
