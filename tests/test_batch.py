"""Batches on messy folders: every good output, a clear reason for every bad input, resumable."""

import errno
import json
import os
import pickle

import numpy as np
import pytest
import torch
from helpers import jpeg_bytes, make_image, pil_size, png16_rgb, refuse_open, write_image
from PIL import Image

from stylize import cli
from stylize.files import TMP_SUFFIX
from stylize.images import tensor_to_pil
from stylize.models import Decoder


@pytest.fixture
def run(encoder_path, decoder_path, capsys):
    """Run the CLI in-process with the test's weights, styles at their own (small) size;
    returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--encoder", str(encoder_path), "--decoder", str(decoder_path), "--style-size", "0",
                      *map(str, args)])  # fmt: skip
        out = capsys.readouterr()
        return exit_info.value.code, out.out, out.err

    return invoke


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def make_messy_folder(root, monkeypatch):
    """Good images of every kind (in subfolders, with clashing names) and every kind of bad file.
    Returns (the good images, {bad file: the reason expected})."""
    good = []

    def keep(rel, img):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel)
        good.append(rel)

    picture = tensor_to_pil(make_image(40, 48, 1))
    keep("plain.jpg", picture)
    keep("same.jpg", picture)  # same stem, two formats: both kept, apart
    keep("same.png", picture)
    keep("Case.jpg", picture)  # apart from case.png on case-insensitive disks too
    keep("case.png", picture)
    keep("trip one/x.png", picture)  # same name in two subfolders
    keep("trip two/x.png", picture)
    keep("Ferien ☀/café 写真.png", picture)
    keep("gray.png", picture.convert("L"))
    keep("palette.gif", picture.convert("P"))
    keep("cmyk.jpg", picture.convert("CMYK"))
    keep("rgba.png", picture.convert("RGBA"))
    png16_rgb(root / "deep16.png", (65535, 30000, 0), 40, 40)
    good.append("deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.save(root / "rotated.jpg", exif=exif.tobytes())
    good.append("rotated.jpg")
    frames = [picture, picture.rotate(90)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    good.append("anim.gif")

    (root / "empty.jpg").write_bytes(b"")
    (root / "cut.jpg").write_bytes(jpeg_bytes()[:700])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (root / "letter.jpg").write_text("Dear Sir, this is not a photo.")
    write_image(root / "tiny.png", 10, 40, 0)
    Image.new("RGB", (300, 300)).save(root / "huge.png")  # over the test's --max-megapixels 0.05
    write_image(root / "locked.png", 40, 40, 0)
    refuse_open(monkeypatch, root / "locked.png")
    bad = {
        "empty.jpg": "empty file (0 bytes)",
        "cut.jpg": "truncated or corrupt",
        "corrupt.png": "cannot read image",
        "letter.jpg": "not a known image format",
        "tiny.png": "smaller than the minimum side of 16 px",
        "huge.png": "image is 300x300 (0.1 MP), over the limit of 0.05 MP",
        "locked.png": "permission denied",
    }
    (root / "notes.txt").write_text("shopping list")
    (root / "trip one" / "clip.mov").write_bytes(b"\x00\x00\x00\x18ftypqt")
    (root / ".hidden.jpg").write_bytes(b"")  # hidden: left out, not even reported
    return good, bad


def test_messy_folder_gives_every_good_output_a_reason_for_every_bad_one_and_resumes(run, tmp_path, monkeypatch):
    content, styles, out = tmp_path / "photos", tmp_path / "paintings", tmp_path / "out"
    good, bad = make_messy_folder(content, monkeypatch)
    write_image(styles / "s.png", 48, 48, 4)
    (styles / "broken.jpg").write_bytes(b"\xff\xd8\xff junk")
    (styles / "readme.txt").write_text("credits")
    args = ["--content", content, "--style", styles, "--output", out, "--recursive", "--ext", "png"]
    args += ["--max-megapixels", "0.05", "--json"]

    code, stdout, stderr = run(*args)
    assert code == 1
    report = json.loads(stdout)
    names = ["plain", "same_jpg", "same_png", "Case_jpg", "case_png", "trip one/x", "trip two/x",
             "Ferien ☀/café 写真", "gray", "palette", "cmyk", "rgba", "deep16", "rotated", "anim"]  # fmt: skip
    outputs = sorted(f"{name}_stylized_s.png" for name in names)
    assert len(outputs) == len(good)
    assert files_under(out) == outputs  # every good image, nothing else: no temporary files
    assert sorted(os.path.relpath(w["output"], out) for w in report["written"]) == outputs
    assert pil_size(out / "rotated_stylized_s.png") == (40, 48)  # upright: EXIF applied
    assert pil_size(out / "Ferien ☀" / "café 写真_stylized_s.png") == (48, 40)
    failed = {os.path.relpath(f["path"], content): f["reason"] for f in report["failed"]}
    failed_styles = {k for k in failed if k.startswith("..")}
    assert failed_styles == {"../paintings/broken.jpg"}
    assert {k: v for k, v in failed.items() if k not in failed_styles}.keys() == bad.keys()
    for name, reason in bad.items():
        assert reason in failed[name], (name, failed[name])
        assert any(line.startswith(f"  failed: {content / name}: ") and reason in line for line in stderr.splitlines())
    skipped = sorted(os.path.relpath(s["path"], tmp_path) for s in report["skipped"])
    assert skipped == ["paintings/readme.txt", "photos/notes.txt", "photos/trip one/clip.mov"]
    assert report["counts"] == {"written": len(good), "skipped": 3, "failed": len(bad) + 1}

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, stdout, _ = run(*args)  # the second run does nothing new
    report = json.loads(stdout)
    assert code == 1 and report["written"] == [] and report["counts"]["skipped"] == len(good) + 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_text_summary_and_exit_code_0(run, image_dirs, tmp_path):
    content, style = image_dirs
    (content / "notes.txt").write_text("x")
    code, out, err = run("--content", content, "--style", style, "--output", tmp_path / "o")
    assert code == 0 and out.startswith("4 written, 1 skipped, 0 failed")
    assert f"skipped (not an image): {content / 'notes.txt'}" in err
    code, out, _ = run("--content", content, "--style", style, "--output", tmp_path / "o")
    assert code == 0 and out.startswith("0 written, 5 skipped, 0 failed (4 already there: kept")
    assert not (tmp_path / "o" / "sub").exists()  # subfolders only with --recursive


def test_unreadable_subfolder_is_reported_and_the_rest_done(run, image_dirs, tmp_path, monkeypatch):
    content, style = image_dirs
    write_image(content / "locked" / "d.png", 40, 40, 5)
    real_scandir = os.scandir

    def guarded(path="."):
        if str(path) in (str(content / "locked"), str(tmp_path / "lockedstyles")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded)  # root lists any folder, so refuse it as the OS would
    code, out, err = run("--content", content, "--style", style, "--output", tmp_path / "o", "--recursive")
    assert code == 1 and out.startswith("6 written, 0 skipped, 1 failed")
    assert f"failed: {content / 'locked'}: cannot list folder (Permission denied)" in err
    (tmp_path / "lockedstyles").mkdir()
    code, _, err = run("--content", content, "--style", tmp_path / "lockedstyles")
    assert code == 2 and "lockedstyles: cannot list it (Permission denied)" in err


def test_output_folder_inside_the_input_is_not_read_back(run, image_dirs):
    content, style = image_dirs
    args = ("--content", content, "--style", style, "--output", content / "stylized", "--recursive", "--ext", "png")
    code, out, _ = run(*args)
    assert code == 0 and out.startswith("6 written")
    code, out, _ = run(*args)
    assert code == 0 and out.startswith("0 written, 6 skipped")
    assert not (content / "stylized" / "stylized").exists()


def test_full_disk_stops_cleanly_without_partial_files(run, image_dirs, tmp_path, monkeypatch):
    content, style = image_dirs
    real_save, writes = Image.Image.save, []

    def save_until_full(self, fp, *args, **kwargs):
        writes.append(1)
        if len(writes) == 2:
            fp.write(b"the first bytes of an image")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_until_full)
    code, out, err = run("--content", content, "--style", style, "--output", tmp_path / "o", "--ext", "png")
    # Writes run behind the networks, so one started before the failure may still land.
    written = int(out.split()[0])
    assert code == 1 and 1 <= written <= 2 and out.startswith(f"{written} written, 0 skipped, 1 failed")
    assert "no space left on device" in err and "stopped early: the disk is full" in err
    kept = files_under(tmp_path / "o")
    assert len(kept) == written and "a_stylized_s1.png" in kept  # no partial or temporary file
    assert all(name.endswith("_stylized_s1.png") or name.endswith("_stylized_s2.png") for name in kept)
    monkeypatch.undo()
    code, out, _ = run("--content", content, "--style", style, "--output", tmp_path / "o", "--ext", "png")
    assert code == 0 and out.startswith(f"{4 - written} written, {written} skipped")


def test_interrupt_removes_the_half_written_output(run, image_dirs, tmp_path, monkeypatch):
    content, style = image_dirs

    def interrupted(self, fp, *args, **kwargs):
        fp.write(b"half")
        raise KeyboardInterrupt  # what Ctrl-C or SIGTERM raises

    monkeypatch.setattr(Image.Image, "save", interrupted)
    code, _, err = run("--content", content, "--style", style, "--output", tmp_path / "o")
    assert code == 130 and "interrupted" in err
    assert files_under(tmp_path / "o") == []


def test_temporary_files_of_a_killed_run_are_cleaned_up(run, image_dirs, tmp_path):
    content, style = image_dirs
    out = tmp_path / "o"
    out.mkdir()
    stale = out / f".a_stylized_s1.jpg.4999999.abc123{TMP_SUFFIX}"  # pid above Linux's maximum: not running
    stale.write_bytes(b"half")
    code, _, _ = run("--content", content, "--style", style, "--output", out)
    assert code == 0 and len(files_under(out)) == 4 and not stale.exists()


def test_output_folder_that_cannot_be_written(run, png, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    code, _, err = run("--content", png("c.png"), "--style", png("s.png"), "--output", tmp_path / "file" / "o.jpg")
    assert code == 2 and "cannot write there" in err


def test_keep_transparency(run, tmp_path):
    rgba = torch.cat([make_image(40, 48, 1), torch.ones(1, 40, 48)])
    rgba[3, :, :24] = 0
    tensor_to_pil(rgba).save(tmp_path / "logo.png")
    style = write_image(tmp_path / "s.png", 40, 40, 2)
    code, _, _ = run("--content", tmp_path / "logo.png", "--style", style, "--output", tmp_path / "o.png",
                     "--transparency", "keep")  # fmt: skip
    assert code == 0
    with Image.open(tmp_path / "o.png") as img:
        assert img.mode == "RGBA"
        alpha = torch.from_numpy(np.array(img.getchannel("A")))
    assert alpha[:, :24].max() == 0 and alpha[:, 24:].min() == 255
    code, _, err = run("--content", tmp_path / "logo.png", "--style", style, "--transparency", "keep")
    assert code == 2 and "--transparency keep needs an output format with alpha" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "-0.1"], "--alpha must be between 0 and 1, got -0.1"),
        (["--alpha", "nan"], "--alpha must be between 0 and 1, got nan"),
        (["--alpha", "strong"], "argument --alpha: invalid float value: 'strong'"),
        (["--max-size", "-5"], "--max-size must be 0 or more"),
        (["--colour", "red"], "unrecognized arguments: --colour red"),
        (["--output", "x.gif"], "--output x.gif: unknown image extension"),
        (["--ext", "gif"], "--ext 'gif'"),
    ],
)
def test_bad_parameters_are_usage_errors(run, png, args, message):
    code, _, err = run("--content", png("c.png"), "--style", png("s.png"), *args)
    assert code == 2 and message in err


def test_empty_style_folder_and_missing_input(run, png, tmp_path):
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "notes.txt").write_text("no paintings yet")
    code, _, err = run("--content", png("c.png"), "--style", tmp_path / "styles")
    assert code == 2 and f"--style {tmp_path / 'styles'}: folder holds no images" in err
    code, _, err = run("--content", tmp_path / "nope", "--style", png("s.png"))
    assert code == 2 and "nope: no such file or folder" in err


def test_weights_with_wrong_shapes_or_pickled_code_are_refused(run, png, tmp_path, encoder_path, capsys):
    wrong = {k: torch.zeros(2, *v.shape[1:]) for k, v in Decoder().state_dict().items()}
    torch.save(wrong, tmp_path / "wrong.pth")

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"decoder": Exploit()}))
    for name, message in (("wrong.pth", "wrong weights for Decoder"), ("evil.pth", "not a readable weights file")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--content", str(png("c.png")), "--style", str(png("s.png")), "--output", str(tmp_path / "o.jpg"),
                      "--encoder", str(encoder_path), "--decoder", str(tmp_path / name)])  # fmt: skip
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "o.jpg").exists()


def test_file_names_that_are_not_utf8(run, tmp_path, png, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, as old cameras and zip files leave them
    try:
        write_image(folder / name, 40, 40, 0)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system only takes valid UTF-8 names")
    (folder / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"")
    code, out, err = run("--content", folder, "--style", png("s.png"), "--output", tmp_path / "o")
    assert code == 1 and out.startswith("1 written")
    assert "empty file" in err
    assert (tmp_path / "o" / os.fsdecode(b"caf\xe9_stylized_s.jpg")).exists()
