import dataclasses
import json

import pytest
import yaml
from helpers import ROOT

from stylize.training.config import ConfigError, TrainConfig, load_config


def test_shipped_configs_load():
    for name in ("adain.yaml", "cpu_128.yaml", "cpu_256.yaml", "smoke.yaml"):
        assert isinstance(load_config(ROOT / "configs" / name), TrainConfig)
    cfg = load_config(ROOT / "configs" / "adain.yaml")
    assert (cfg.batch_size, cfg.crop_size, cfg.steps, cfg.lr) == (8, 256, 160_000, 1e-4)


def test_overrides_are_parsed_as_yaml(tmp_path):
    cfg = load_config(None, ["batch_size=16", "lr=3e-4", "amp=false", "out_dir=runs/x"])
    assert (cfg.batch_size, cfg.lr, cfg.amp, cfg.out_dir) == (16, 3e-4, False, "runs/x")
    assert load_config(None, ["style_weight=5"]).style_weight == 5.0  # an int is fine for a float
    assert load_config(None, ["skip_taps=[relu2_1, relu3_1]"]).skip_taps == ["relu2_1", "relu3_1"]
    assert load_config(None, []).style_size == 288  # the style images' size follows image_size...
    assert load_config(None, ["style_image_size=300"]).style_size == 300  # ...unless set
    assert load_config(None, ["cache_dir=runs/c"]).cache_dir == "runs/c"
    cfg = load_config(None, ["cache_dir=runs/c", "init_decoder=runs/d.pth", "cache_dir=", "init_decoder= "])
    assert (cfg.cache_dir, cfg.init_decoder) == ("", "")  # key= empties a path: no cache, as on a shell
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
        ("ema_decay: 1\n", r"config key 'ema_decay': must be in \[0, 1\), got 1.0"),
        ("cooldown_start: 100\n", "config key 'cooldown_steps': must be positive with a cooldown_start, got 0"),
        ("- a\n- b\n", "expected a mapping"),
        ("skip_taps: [relu2_1, 7]\n", r"config key 'skip_taps\[1\]': expected str, got int"),
        ("skip_taps: relu2_1\n", "config key 'skip_taps': expected list, got str"),
        ("style_half_weight: 0.5\ncache_dir: runs/c\n", "'style_half_weight': needs the style images read each step"),
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


def test_every_key_is_set_by_a_shipped_config_or_the_shipped_recipe():
    # a key that nothing shipped sets is an experiment's, and leaves the code (docs/training.md)
    used = set()
    for path in (ROOT / "configs").glob("*.yaml"):
        used |= set(yaml.safe_load(path.read_text()))
    for stage in json.loads((ROOT / "weights" / "MANIFEST.json").read_text())["decoder.pth"]["recipe"]["stages"]:
        used |= set(stage["set"])
    assert {f.name for f in dataclasses.fields(TrainConfig)} - used == set()
