"""Shared fixtures: images and weights made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import ROOT, write_image

from stylize.models import Decoder
from stylize.training.config import load_config


@pytest.fixture
def image_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A content folder (with a subfolder) and a style folder of small generated images."""
    content, style = tmp_path / "content", tmp_path / "style"
    write_image(content / "a.png", 40, 48, 1)
    write_image(content / "b.jpg", 44, 40, 2)
    write_image(content / "sub" / "c.png", 48, 48, 3)
    write_image(style / "s1.png", 48, 40, 4)
    write_image(style / "s2.jpg", 40, 40, 5)
    return content, style


@pytest.fixture(scope="session")
def encoder_path() -> Path:
    """The encoder the repo ships (real VGG-19 weights: features that mean something)."""
    path = ROOT / "weights" / "vgg19_relu4_1.pth"
    assert path.exists(), "weights/vgg19_relu4_1.pth is missing"
    return path


@pytest.fixture
def decoder_path(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "decoder.pth"
    torch.save(Decoder().state_dict(), path)
    return path


@pytest.fixture
def png(tmp_path: Path):
    def write(name: str, h: int = 40, w: int = 40, seed: int = 0) -> Path:
        return write_image(tmp_path / name, h, w, seed)

    return write


@pytest.fixture
def cache_cfg(tmp_path, image_dirs, encoder_path):
    """Configs of a smoke run on the image folders, with a cache in tmp_path/cache."""
    content, style = image_dirs

    def make(*overrides: str, out: str = "run"):
        sets = [f"content_dir={content}", f"style_dir={style}", f"encoder={encoder_path}",
                f"out_dir={tmp_path / out}", f"cache_dir={tmp_path / 'cache'}", *overrides]  # fmt: skip
        return load_config(ROOT / "configs" / "smoke.yaml", sets)

    return make
