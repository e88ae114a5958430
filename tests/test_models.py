import pytest
import torch

from stylize.models import STYLE_TAPS, Decoder, Encoder, adain, mean_std
from stylize.stylizer import Stylizer


def test_adain_gives_content_the_style_statistics():
    torch.manual_seed(0)
    content = torch.randn(2, 8, 9, 7) * 3 + 1
    style = torch.randn(2, 8, 5, 6) * 0.5 - 2
    out = adain(content, *mean_std(style))
    out_mean, out_std = mean_std(out)
    style_mean, style_std = mean_std(style)
    torch.testing.assert_close(out_mean, style_mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out_std, style_std, atol=1e-4, rtol=1e-3)
    # the normalised content pattern is kept: AdaIN is an affine map per channel
    corr = torch.corrcoef(torch.stack([out[0, 0].flatten(), content[0, 0].flatten()]))[0, 1]
    assert corr > 0.999


def test_adain_alpha_blends_in_feature_space():
    torch.manual_seed(1)
    content, style = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6) * 2
    stats = mean_std(style)
    torch.testing.assert_close(adain(content, *stats, alpha=0.0), content)
    full = adain(content, *stats, alpha=1.0)
    torch.testing.assert_close(adain(content, *stats, alpha=0.25), 0.25 * full + 0.75 * content)


def test_adain_cap_bounds_a_lone_spike_and_leaves_the_rest():
    content = torch.zeros(1, 2, 10, 10)
    content[0, 0, 2, 3] = 100.0  # quiet but for one pixel: ~10 stds out
    content[0, 1] = torch.linspace(0, 1, 100).view(10, 10)  # no pixel near 6 stds out
    stats = (torch.zeros(1, 2, 1, 1), torch.ones(1, 2, 1, 1))
    plain, capped = adain(content, *stats), adain(content, *stats, cap=6.0)
    assert plain[0, 0, 2, 3] > 9.0
    torch.testing.assert_close(capped[0, 0, 2, 3], torch.tensor(6.0))  # the style's mean + 6 of its stds
    torch.testing.assert_close(capped[0, 0, 0, 0], plain[0, 0, 0, 0])
    torch.testing.assert_close(capped[0, 1], plain[0, 1])  # within the cap: the paper's AdaIN
    # alpha 0 gives the content back, spike and all
    torch.testing.assert_close(adain(content, *stats, alpha=0.0, cap=6.0), content)


def test_mean_std_uses_eps_for_constant_channels():
    mean, std = mean_std(torch.full((1, 3, 4, 4), 2.0))
    assert torch.all(mean == 2.0) and torch.all(std > 0)


def test_encoder_taps_shapes_and_frozen():
    enc = Encoder()
    taps = enc(torch.rand(2, 3, 64, 48))
    assert list(taps) == list(STYLE_TAPS)
    assert taps["relu1_1"].shape == (2, 64, 64, 48)
    assert taps["relu2_1"].shape == (2, 128, 32, 24)
    assert taps["relu3_1"].shape == (2, 256, 16, 12)
    assert taps["relu4_1"].shape == (2, 512, 8, 6)
    assert all((t >= 0).all() for t in taps.values())
    assert list(enc(torch.rand(1, 3, 16, 16), last="relu2_1")) == ["relu1_1", "relu2_1"]  # stops there
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training


def test_decoder_upsamples_by_eight():
    assert Decoder()(torch.rand(1, 512, 5, 7)).shape == (1, 3, 40, 56)


def test_a_decoder_with_new_skips_paints_as_the_paper_s_until_trained():
    torch.manual_seed(0)
    plain = Decoder()
    skips = Decoder(("relu3_1", "relu2_1"))
    skips.load_state_dict({**plain.state_dict(), **{k: v for k, v in skips.state_dict().items() if "skips" in k}})
    x = torch.rand(1, 512, 3, 4)
    shallow = {"relu3_1": torch.rand(1, 256, 6, 8), "relu2_1": torch.rand(1, 128, 12, 16)}
    assert skips.skip_taps == ("relu2_1", "relu3_1")  # in one order, whatever the order given
    assert torch.equal(skips(x, shallow), plain(x))
    torch.nn.init.normal_(skips.skips["relu2_1"].weight)  # once trained, the photo's taps count
    assert not torch.allclose(skips(x, shallow), plain(x))
    with pytest.raises(ValueError, match="also takes the features of relu2_1, relu3_1"):
        skips(x)
    with pytest.raises(ValueError, match="skip taps must be among"):
        Decoder(("relu4_1",))


def test_stylizer_with_skips_uses_the_style_s_shallow_statistics():
    torch.manual_seed(0)
    dec = Decoder(("relu3_1",))
    torch.nn.init.normal_(dec.skips["relu3_1"].weight, std=0.1)
    stylizer = Stylizer(Encoder(), dec, "cpu")
    content, style = torch.rand(3, 40, 48), torch.rand(3, 32, 32)
    stats = stylizer.style_stats(style)
    assert set(stats.shallow) == {"relu3_1"}
    other = stats._replace(shallow={"relu3_1": (stats.at("relu3_1")[0] + 1, stats.at("relu3_1")[1])})
    assert not torch.allclose(stylizer.stylize(content, stats), stylizer.stylize(content, other))
    with pytest.raises(ValueError, match="no relu3_1"):  # statistics made for a decoder without skips
        stylizer.stylize(content, stats._replace(shallow=None))
    mixed = stylizer.mix([stats, other], [1, 1])
    torch.testing.assert_close(mixed.at("relu3_1")[0], stats.at("relu3_1")[0] + 0.5)


@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (17, 90)])
def test_stylizer_keeps_odd_sizes(hw):
    torch.manual_seed(0)
    stylizer = Stylizer(Encoder(), Decoder(), "cpu")
    out = stylizer.stylize(torch.rand(3, *hw), torch.rand(3, 32, 40))
    assert out.shape == (3, *hw)
    assert out.min() >= 0 and out.max() <= 1
    batch = stylizer.stylize(torch.rand(2, 3, *hw), torch.rand(3, 32, 40))
    assert batch.shape == (2, 3, *hw)


def test_stylizer_rejects_alpha_out_of_range():
    stylizer = Stylizer(Encoder(), Decoder(), "cpu")
    with pytest.raises(ValueError, match="alpha"):
        stylizer.stylize(torch.rand(3, 16, 16), torch.rand(3, 16, 16), alpha=1.5)
