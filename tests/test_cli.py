import pytest
import torch
from helpers import ROOT, pil_size, write_image

from stylize import cli
from stylize.images import load_image
from stylize.stylizer import Stylizer


@pytest.fixture
def run(encoder_path, decoder_path, capsys):
    """Run the CLI in-process with the test's weights; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--encoder", str(encoder_path), "--decoder", str(decoder_path), *map(str, args)])
        out = capsys.readouterr()
        return exit_info.value.code, out.out, out.err

    return invoke


def test_single_pair_writes_the_named_file_at_content_size(run, png, tmp_path):
    content, style = png("photo.png", 37, 51, 1), png("paint.png", 40, 40, 2)
    code, out, _ = run("--content", content, "--style", style, "--output", tmp_path / "o" / "x.png")
    assert code == 0 and "1 written" in out
    assert pil_size(tmp_path / "o" / "x.png") == (51, 37)


def test_default_output_name(run, png, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run("--content", png("photo.png", 40, 40, 1), "--style", png("paint.png", 40, 40, 2))
    assert code == 0
    assert (tmp_path / "outputs" / "photo_stylized_paint.jpg").exists()


def test_folders_give_every_pair_and_encode_each_style_once(run, image_dirs, tmp_path, monkeypatch):
    content, style = image_dirs
    calls = []
    real = Stylizer.style_stats
    monkeypatch.setattr(Stylizer, "style_stats", lambda self, img: calls.append(1) or real(self, img))
    code, out, _ = run("--content", content, "--style", style, "--output", tmp_path / "out", "--ext", "png")
    assert code == 0 and "4 written" in out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a_stylized_s1.png", "a_stylized_s2.png", "b_stylized_s1.png", "b_stylized_s2.png"]
    assert pil_size(tmp_path / "out" / "b_stylized_s1.png") == (40, 44)
    assert len(calls) == 2


def test_existing_outputs_are_kept_unless_overwrite(run, png, tmp_path):
    content, style, dst = png("c.png"), png("s.png", seed=3), tmp_path / "d.png"
    dst.write_bytes(b"mine")
    code, out, _ = run("--content", content, "--style", style, "--output", dst)
    assert code == 0 and "1 skipped" in out and dst.read_bytes() == b"mine"
    code, out, _ = run("--content", content, "--style", style, "--output", dst, "--overwrite")
    assert code == 0 and "1 written" in out and pil_size(dst) == (40, 40)


def test_bad_file_in_folder_is_reported_and_others_done(run, image_dirs, tmp_path):
    content, style = image_dirs
    (content / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_image(content / "tiny.png", 8, 8, 0)
    code, out, err = run("--content", content, "--style", style, "--output", tmp_path / "out")
    assert code == 1
    assert "4 written" in out and "2 failed" in out
    assert "zz_broken.jpg: cannot read image" in err
    assert "tiny.png: image is 8x8, smaller than the minimum side of 16 px" in err
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files


def test_usage_errors_exit_2(run, png, tmp_path):
    content, style = png("c.png"), png("s.png")
    code, _, err = run("--content", content, "--style", style, "--alpha", "1.5")
    assert code == 2 and "--alpha must be between 0 and 1, got 1.5" in err
    code, _, err = run("--content", tmp_path / "nope.jpg", "--style", style)
    assert code == 2 and "nope.jpg: no such file or folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run("--content", content, "--style", tmp_path / "empty")
    assert code == 2 and "folder holds no images" in err
    code, _, err = run("--content", content, "--style", style, "--ext", "gif")
    assert code == 2 and "--ext 'gif'" in err


def test_corrupt_decoder_is_a_clear_error(run, png, tmp_path, encoder_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--content", str(png("c.png")), "--style", str(png("s.png")), "--decoder", str(bad)])
    assert exit_info.value.code == 2
    assert "bad.pth: not a readable weights file" in capsys.readouterr().err


def test_shipped_weights_stylize_out_of_the_box(png, tmp_path):
    """The main command with no weight options: visibly changed at alpha 1, near the content at 0."""
    content, style = png("c.png", 64, 72, 1), png("s.png", 64, 64, 7)
    out1, out0 = tmp_path / "a1.png", tmp_path / "a0.png"
    for alpha, out in ((1.0, out1), (0.0, out0)):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--content", str(content), "--style", str(style), "--alpha", str(alpha), "--output", str(out)])
        assert exit_info.value.code == 0
    c, s1, s0 = load_image(content), load_image(out1), load_image(out0)
    assert s1.shape == s0.shape == c.shape
    err0, err1 = (s0 - c).abs().mean().item(), (s1 - c).abs().mean().item()
    assert err0 < 0.12 and err1 > err0, (err0, err1)
    assert torch.isfinite(s1).all() and ROOT.joinpath("weights", "decoder.pth").exists()
