import subprocess
import sys

import pytest
from helpers import ROOT, pil_size, write_image
from PIL import Image, ImageDraw

from stylize import cli
from stylize.engine import Engine
from stylize.images import center_crop, load_image, resize_short, save_image
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


def test_folders_give_every_pair_and_encode_each_image_once(run, image_dirs, tmp_path, monkeypatch):
    content, style = image_dirs
    calls, encoded = [], []
    real, real_encode = Stylizer.style_stats, Engine.encode
    monkeypatch.setattr(Stylizer, "style_stats", lambda self, img: calls.append(1) or real(self, img))
    monkeypatch.setattr(Engine, "encode", lambda self, x: encoded.append(x.shape) or real_encode(self, x))
    code, out, _ = run("--content", content, "--style", style, "--output", tmp_path / "out", "--ext", "png")
    assert code == 0 and "4 written" in out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a_stylized_s1.png", "a_stylized_s2.png", "b_stylized_s1.png", "b_stylized_s2.png"]
    assert pil_size(tmp_path / "out" / "b_stylized_s1.png") == (40, 44)
    assert len(calls) == 2
    assert len(encoded) == 4  # 2 styles + 2 contents, each painted in both styles


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


def test_shipped_weights_stylize_out_of_the_box(tmp_path):
    """The main command with no weight options, on the bundled example: the output has the content's
    size, alpha 0 stays nearest the content and alpha 1 moves furthest from it. The provisional CPU
    decoder (step 2040) measured mean abs errors 0.171 / 0.179 / 0.214 here; a random decoder gives
    about 0.3 at alpha 0."""
    content = tmp_path / "c.png"
    save_image(center_crop(resize_short(load_image(ROOT / "examples" / "content" / "chelsea.jpg"), 128), 128), content)
    style = ROOT / "examples" / "style" / "strokes.jpg"
    outs = {}
    for alpha in (0.0, 0.5, 1.0):
        outs[alpha] = tmp_path / f"a{alpha}.png"
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--content", str(content), "--style", str(style), "--alpha", str(alpha),
                      "--style-size", "128", "--output", str(outs[alpha])])  # fmt: skip
        assert exit_info.value.code == 0
    c = load_image(content)
    err = {a: (load_image(p) - c).abs().mean().item() for a, p in outs.items()}
    assert all(load_image(p).shape == c.shape for p in outs.values())
    assert err[0.0] < 0.2 and err[0.0] < err[0.5] < err[1.0], err


def test_style_mix_from_the_cli(run, png, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    content, a, b = png("c.png", 40, 48, 1), png("a.png", seed=2), png("b.png", seed=3)
    code, _, err = run("--content", content, "--style", f"{a},{b}", "--style-weights", "2,1")
    assert code == 0 and "style weights normalised to a.png 0.667, b.png 0.333" in err
    assert pil_size(tmp_path / "outputs" / "c_stylized_a+b.jpg") == (48, 40)


def test_mask_and_colour_controls_from_the_cli(run, png, tmp_path):
    content, a, b = png("c.png", 40, 48, 1), png("a.png", seed=2), png("b.png", seed=3)
    mask = tmp_path / "m.png"
    img = Image.new("L", (48, 40), 0)
    ImageDraw.Draw(img).rectangle((0, 0, 23, 39), fill=255)  # white left half: style a; b elsewhere
    img.save(mask)
    for extra in (["--mask", mask], ["--preserve-color", "coral"], ["--preserve-color", "luminance"]):
        code, out, _ = run(
            "--content", content, "--style", f"{a},{b}", *extra, "--output", tmp_path / "x.png", "--overwrite"
        )
        assert code == 0 and "1 written" in out, extra
        assert pil_size(tmp_path / "x.png") == (48, 40)


def test_control_usage_errors_exit_2(run, png):
    content, a, b = png("c.png"), png("a.png", seed=2), png("b.png", seed=3)
    code, _, err = run("--content", content, "--style", f"{a},{b}", "--style-weights", "1,-1")
    assert code == 2 and "--style-weights 1,-1: style weights must be zero or positive, got -1" in err
    code, _, err = run("--content", content, "--style", f"{a},{b}", "--style-weights", "0,0")
    assert code == 2 and "all zero" in err
    code, _, err = run("--content", content, "--style", f"{a},{b}", "--mask", f"{a},{a},{a}")
    assert code == 2 and "3 masks for 2 styles" in err
    code, _, err = run("--content", content, "--style", f"{a},{b}", "--mask", a, "--style-weights", "1,1")
    assert code == 2 and "use one" in err
    code, _, err = run("--content", content, "--style", f"{a},missing.png")
    assert code == 2 and "--style missing.png: no such file or folder" in err
    code, _, err = run("--content", content, "--style", a, "--preserve-color", "hue")
    assert code == 2 and "invalid choice: 'hue'" in err


def test_unreadable_mask_is_reported_and_nothing_written(run, png, tmp_path):
    content, a = png("c.png"), png("a.png", seed=2)
    (tmp_path / "m.png").write_bytes(b"not a png")
    out_file = tmp_path / "o" / "x.png"
    code, out, err = run("--content", content, "--style", a, "--mask", tmp_path / "m.png", "--output", out_file)
    assert code == 1 and "0 written" in out and "m.png: cannot read image" in err
    assert not (tmp_path / "o").exists()


def test_video_round_trip_from_the_cli(run, tmp_path):
    av = pytest.importorskip("av")
    from helpers import write_clip

    clip = write_clip(tmp_path / "clip.mp4", frames=6, h=32, w=48, fps=12)
    style = write_image(tmp_path / "s.png", 40, 40, 4)
    dst = tmp_path / "o.mp4"
    code, out, err = run("--content", clip, "--style", style, "--output", dst, "--batch-size", "4")
    assert code == 0 and "1 written" in out and f"{dst}: 6 frames at 12 fps, audio kept; flicker" in err
    with av.open(str(dst)) as c:
        video = c.streams.video[0]
        assert (video.width, video.height, video.average_rate) == (48, 32, 12)
        assert len(list(c.decode(video=0))) == 6 and len(c.streams.audio) == 1
    code, _, err = run("--content", clip, "--style", style, "--output", tmp_path / "d.mp4", "--audio", "drop")
    assert code == 0 and "audio dropped" in err
    with av.open(str(tmp_path / "d.mp4")) as c:
        assert not c.streams.audio and len(c.streams.video) == 1
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    code, _, err = run("--content", tmp_path / "bad.mp4", "--style", style, "--output", tmp_path / "e.mp4")
    assert code == 1 and "bad.mp4: cannot stylize video" in err and not (tmp_path / "e.mp4").exists()


def test_refine_from_the_cli(run, png, tmp_path):
    content, style = png("c.png", 40, 48, 1), png("s.png", seed=2)
    code, out, _ = run("--content", content, "--style", style, "--output", tmp_path / "plain.png")
    assert code == 0
    code, out, _ = run("--content", content, "--style", style, "--refine", "3", "--output", tmp_path / "r.png")
    assert code == 0 and "1 written" in out
    assert pil_size(tmp_path / "r.png") == (48, 40)
    assert load_image(tmp_path / "r.png").ne(load_image(tmp_path / "plain.png")).any()
    code, _, err = run("--content", content, "--style", style, "--refine", "-2")
    assert code == 2 and "--refine must be 0 or more, got -2" in err
    code, _, err = run("--content", content, "--style", f"{style},{style}", "--mask", style, "--refine", "2")
    assert code == 2 and "--refine works over the whole image" in err


@pytest.mark.parametrize("flag", ["--style-size", "--content-size"])
def test_a_size_that_cannot_fit_is_a_usage_error_before_any_work(run, png, flag):
    content, style = png("c.png", 40, 48, 1), png("s.png", seed=2)
    code, out, err = run("--content", content, "--style", style, flag, "99999")
    assert code == 2 and out == ""
    reason = f"{flag} 99999: a picture of at least that squared is over --max-megapixels 100; choose up to 10000"
    assert err.strip().splitlines()[-1] == f"stylize-adain: error: {reason}"  # the usage, then one line
    code, _, _ = run("--content", content, "--style", style, flag, "10000", "--max-megapixels", "0", "--help")
    assert code == 0  # --max-megapixels 0 lifts the limit


@pytest.mark.parametrize("args", [["--help"], ["--content", "nope.jpg", "--style", "nope.jpg"], ["--version"]])
def test_help_and_usage_errors_answer_before_torch_is_loaded(args):
    # seconds on a laptop: the parser and its checks need none of the networks' modules
    code = f"""
import sys
from stylize import cli
try:
    cli.main({args!r})
except SystemExit as e:
    assert e.code in (0, 2), e.code
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("stylize"))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stylize-adain" in done.stdout + done.stderr


def test_the_help_shows_the_installed_command_and_groups_the_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "python infer.py" not in text and "  stylize-adain --content photo.jpg --style painting.jpg" in text
    for group in (
        "what to paint:",
        "sizes and formats:",
        "creative controls:",
        "folders:",
        "video:",
        "devices and weights:",
    ):
        assert group in text
