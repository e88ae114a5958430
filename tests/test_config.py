import pytest
from helpers import ROOT

from stylize.config import ConfigError, TrainConfig, load_config


def test_shipped_configs_load():
    for name in ("adain.yaml", "adain_cpu.yaml", "smoke.yaml"):
        assert isinstance(load_config(ROOT / "configs" / name), TrainConfig)
    cfg = load_config(ROOT / "configs" / "adain.yaml")
    assert (cfg.batch_size, cfg.crop_size, cfg.steps, cfg.lr) == (8, 256, 160_000, 1e-4)


def test_overrides_are_parsed_as_yaml(tmp_path):
    cfg = load_config(None, ["batch_size=16", "lr=3e-4", "amp=false", "out_dir=runs/x"])
    assert (cfg.batch_size, cfg.lr, cfg.amp, cfg.out_dir) == (16, 3e-4, False, "runs/x")
    assert load_config(None, ["style_weight=5"]).style_weight == 5.0  # an int is fine for a float
    assert load_config(None, ["style_layer_weights=[2, 2, 1, 0.5]"]).style_layer_weights == [2.0, 2.0, 1.0, 0.5]
    assert load_config(None, []).painting_size == 288  # the paintings' size follows image_size...
    assert load_config(None, ["style_image_size=300"]).painting_size == 300  # ...unless set
    cfg = load_config(None, ["style_image_size=128", "style_crop_size=128"])  # crop_size 256 is the photos'
    assert (cfg.crop_size, cfg.painting_crop) == (256, 128) and load_config(None, []).painting_crop == 256
    assert load_config(None, ["cache_dir=runs/c"]).cache_dir == "runs/c"
    cfg = load_config(None, ["cache_dir=runs/c", "distill_dir=runs/d", "cache_dir=", "distill_dir= "])
    assert (cfg.cache_dir, cfg.distill_dir) == ("", "")  # key= empties a path: no cache, as on a shell
    with pytest.raises(ConfigError, match="config key 'steps': expected int, got str"):
        load_config(None, ["steps="])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("batch_sise: 8\n", "unknown config key 'batch_sise'"),
        ("batch_size: eight\n", "config key 'batch_size': expected int, got str"),
        ("amp: 1\n", "config key 'amp': expected bool, got int"),
        ("lr: [1, 2]\n", "config key 'lr': expected float, got list"),
        ("steps: 0\n", "config key 'steps': must be positive"),
        ("crop_size: 512\n", "config key 'crop_size': 512 is larger than image_size"),
        ("style_image_size: 128\n", "config key 'crop_size': 256 is larger than style_image_size 128"),
        ("style_image_size: -1\n", "config key 'style_image_size': must not be negative"),
        ("style_image_size: 128\nstyle_crop_size: 192\n", "'style_crop_size': 192 is larger than style_image_size"),
        ("style_crop_size: 300\n", "config key 'style_crop_size': 300 is larger than image_size 288"),
        ("ema_decay: 1\n", r"config key 'ema_decay': must be in \[0, 1\), got 1.0"),
        ("cooldown_start: 100\n", "config key 'cooldown_steps': must be positive with a cooldown_start, got 0"),
        ("- a\n- b\n", "expected a mapping"),
        ("style_layer_weights: [1, 1, 1]\n", "config key 'style_layer_weights': 4 weights"),
        ("style_layer_weights: [1, 1, -1, 1]\n", "config key 'style_layer_weights': 4 weights"),
        ("style_layer_weights: [1, 1, x, 1]\n", r"config key 'style_layer_weights\[2\]': expected float, got str"),
        ("style_layer_weights: 1\n", "config key 'style_layer_weights': expected list, got int"),
        ("skip_taps: [relu4_1]\n", "config key 'skip_taps': each one of relu1_1, relu2_1, relu3_1, got relu4_1"),
        ("skip_lr_scale: 0\n", "config key 'skip_lr_scale': must be positive"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["batch_size"])
