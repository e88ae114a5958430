"""The release as a user gets it: a wheel that carries the weights, installed outside the repository."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT, pil_size

from stylize import __version__


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`python -m build` of the repository: an sdist and a wheel (the build's own packages, offline)."""
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


def test_the_wheel_carries_the_weights_and_passes_twine_check(dist):
    (wheel,) = dist.glob(f"stylize_adain-{__version__}-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"stylize/assets/{n}" for n in ("vgg19_relu4_1.pth", "decoder.pth", "MANIFEST.json")} <= names
    assert "stylize/examples/content/chelsea.jpg" in names and "stylize/static/index.html" in names
    assert not [n for n in names if n.startswith(("weights/", "examples/", "tests/"))]  # only inside the package
    check = subprocess.run([sys.executable, "-m", "twine", "check", *map(str, dist.iterdir())], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_installed_from_the_wheel_it_stylizes_outside_the_repository(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # the test environment's packages (torch and the rest) without its editable install of stylize:
    # a path in a .pth file is added as it is, its own .pth files (the editable finder) are not run
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    (site / "parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    photo, painting = ROOT / "examples" / "content" / "chelsea.jpg", ROOT / "examples" / "style" / "strokes.jpg"
    cli = [venv / "bin" / "stylize-adain", "--content", photo, "--style", painting, "--output", "out.jpg"]
    done = subprocess.run(list(map(str, cli)), cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert pil_size(work / "out.jpg") == pil_size(photo)
    version = subprocess.run([venv / "bin" / "stylize-adain", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"stylize-adain {__version__}"
    api = f"""
import stylize, stylize.options as w
from stylize import Stylizer
from stylize.images import load_image, save_image
assert stylize.__file__.startswith({str(venv)!r}), stylize.__file__  # the wheel's copy, not the repository's
assert w.WEIGHTS_DIR.parts[-2:] == ("stylize", "assets"), w.WEIGHTS_DIR
s = Stylizer.from_pretrained()
save_image(s.stylize(load_image({str(photo)!r}), load_image({str(painting)!r})), "api.png")
"""
    done = subprocess.run([python, "-c", api], cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert pil_size(work / "api.png") == pil_size(photo)
