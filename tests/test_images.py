"""Decoding images as people have them, and failing clearly on the ones that cannot be used."""

import random
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, jpeg_bytes, make_image, png16_rgb, refuse_open, write_image
from PIL import Image, ImageOps, JpegImagePlugin

from stylize.files import TMP_SUFFIX, atomic_write, remove_stale_temps
from stylize.images import ImageError, TooLargeError, limit_long, load_image, make_grid, save_image, tensor_to_pil


def pillow_decode(path) -> torch.Tensor:
    """The reference: Pillow's pixels, upright per EXIF."""
    with Image.open(path) as img:
        return torch.from_numpy(np.array(ImageOps.exif_transpose(img).convert("RGB"))).permute(2, 0, 1) / 255


def flat(mode: str, colour, size=(32, 24)) -> Image.Image:
    return Image.new(mode, size, colour)


def test_exif_orientation_is_applied(tmp_path):
    img = tensor_to_pil(make_image(24, 40, 0))  # 40 wide, 24 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "phone.jpg").shape == (3, 40, 24)


@pytest.mark.parametrize(
    ("name", "image", "rgb"),
    [
        ("gray.png", flat("L", 128), (0.5, 0.5, 0.5)),
        ("bilevel.png", flat("1", 1), (1, 1, 1)),
        ("palette.png", flat("RGB", (0, 0, 255)).convert("P"), (0, 0, 1)),
        ("cmyk.jpg", flat("CMYK", (0, 255, 255, 0)), (1, 0, 0)),
        ("cmyk.tif", flat("CMYK", (255, 0, 255, 0)), (0, 1, 0)),
        ("gray16.png", flat("I;16", 32768), (0.5, 0.5, 0.5)),
        ("transparent.png", flat("RGBA", (0, 0, 0, 0)), (1, 1, 1)),  # on white
        ("half.png", flat("LA", (0, 128)), (0.5, 0.5, 0.5)),
    ],
)
def test_modes_become_rgb(tmp_path, name, image, rgb):
    image.save(tmp_path / name)
    t = load_image(tmp_path / name)
    assert t.shape == (3, 24, 32) and t.dtype == torch.float32
    assert torch.allclose(t.mean(dim=(1, 2)), torch.tensor(rgb, dtype=torch.float32), atol=0.03), t.mean(dim=(1, 2))


def test_16_bit_rgb_png(tmp_path):
    t = load_image(png16_rgb(tmp_path / "deep.png", (65535, 32768, 0)))
    assert t.shape == (3, 24, 32)
    assert torch.allclose(t.mean(dim=(1, 2)), torch.tensor([1.0, 0.5, 0.0]), atol=0.01)


def test_palette_with_transparency_and_keep_alpha(tmp_path):
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., 0], rgba[:, :16, 3], rgba[:, 16:, 3] = 255, 0, 255  # red; left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba, "RGBA").convert("PA").convert("RGBA").quantize().save(tmp_path / "p.gif", transparency=0)
    t = load_image(tmp_path / "a.png")
    assert t.shape == (3, 24, 32) and t[:, :, :16].min() == 1 and t[1:, :, 16:].max() == 0  # white | red
    kept = load_image(tmp_path / "a.png", keep_alpha=True)
    assert kept.shape == (4, 24, 32) and kept[3, :, :16].max() == 0 and kept[3, :, 16:].min() == 1
    assert torch.equal(kept[:3], t)
    assert load_image(tmp_path / "p.gif").shape == (3, 24, 32)
    assert load_image(tmp_path / "a.png").shape == load_image(write_image(tmp_path / "rgb.png", 24, 32, 0)).shape


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [flat("RGB", c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    t = load_image(tmp_path / "anim.gif")
    assert torch.allclose(t.mean(dim=(1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.02)


def test_unicode_and_spaces_in_the_path(tmp_path):
    path = write_image(tmp_path / "Ferien 2024 ☀" / "café au lait 写真.jpg", 24, 32, 0)
    assert load_image(path).shape == (3, 24, 32)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.jpg", b"", "empty.jpg: empty file (0 bytes)"),
        ("text.jpg", b"just some notes, not a picture\n", "text.jpg: cannot read image: not a known image format"),
        ("cut.jpg", jpeg_bytes()[:700], "cut.jpg: cannot read image, truncated or corrupt"),
        ("header.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "header.png: cannot read image"),
    ],
)
def test_broken_files_name_the_file_and_the_reason(tmp_path, name, data, reason):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / name)
    assert str(info.value).startswith(f"{tmp_path / name}: ") and reason in str(info.value)


def test_too_small_too_big_missing_and_folders(tmp_path):
    with pytest.raises(ImageError, match=r"tiny.png: image is 8x12, smaller than the minimum side of 16 px"):
        load_image(write_image(tmp_path / "tiny.png", 12, 8, 0))
    Image.new("L", (4000, 3000)).save(tmp_path / "huge.png")  # a few kB on disk, 12 MP decoded
    with pytest.raises(TooLargeError, match=r"huge.png: image is 4000x3000 \(12 MP\), over the limit of 10 MP"):
        load_image(tmp_path / "huge.png", max_pixels=10_000_000)
    assert load_image(tmp_path / "huge.png", max_pixels=0).shape == (3, 3000, 4000)  # 0 lifts the limit
    with pytest.raises(ImageError, match="nope.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_unreadable_permissions(tmp_path, monkeypatch):
    path = write_image(tmp_path / "locked.png", 24, 24, 0)
    refuse_open(monkeypatch, path)
    with pytest.raises(ImageError, match="locked.png: permission denied"):
        load_image(path)


def test_fuzz_random_bytes_and_headers_give_a_tensor_or_an_image_error(tmp_path):
    """Random bytes, real format headers followed by garbage, and damaged real files: the
    loader returns a usable tensor or raises ImageError, never anything else."""
    rng = random.Random(1234)
    headers = [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0",
        b"GIF89a",
        b"BM",
        b"II*\x00",
        b"MM\x00*",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    ]
    good = [jpeg_bytes()]
    for fmt in ("PNG", "GIF", "BMP", "TIFF", "WEBP"):
        path = tmp_path / f"good.{fmt.lower()}"
        tensor_to_pil(make_image(32, 32, 2)).save(path, format=fmt)
        good.append(path.read_bytes())
    cases = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))) for _ in range(40)]
    cases += [h + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))) for h in headers for _ in range(10)]
    for data in good:
        cases += [data[: rng.randint(0, len(data))] for _ in range(8)]  # truncated
        for _ in range(8):  # a few random bytes changed
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(len(damaged))] = rng.getrandbits(8)
            cases.append(bytes(damaged))
    outcomes = {"ok": 0, "error": 0}
    for i, data in enumerate(cases):
        path = tmp_path / f"case{i}.img"
        path.write_bytes(data)
        try:
            t = load_image(path, max_pixels=4_000_000)
        except ImageError as e:
            assert str(e).startswith(f"{path}: ")
            outcomes["error"] += 1
        else:
            assert t.dim() == 3 and t.shape[0] == 3 and min(t.shape[1:]) >= 16
            assert t.min() >= 0 and t.max() <= 1 and torch.isfinite(t).all()
            outcomes["ok"] += 1
    assert outcomes["error"] > 100 and outcomes["ok"] > 0, outcomes  # both paths were exercised


def test_atomic_write_leaves_nothing_when_it_fails(tmp_path):
    with pytest.raises(OSError, match="No space left"), atomic_write(tmp_path / "x.png") as f:
        f.write(b"half an image")
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    save_image(make_image(20, 20, 0), tmp_path / "y.png")
    assert [p.name for p in tmp_path.iterdir()] == ["y.png"]
    with pytest.raises(ImageError, match="cannot hold transparency"):
        save_image(torch.rand(4, 20, 20), tmp_path / "z.jpg")
    assert [p.name for p in tmp_path.iterdir()] == ["y.png"]


def test_written_files_get_the_permissions_of_a_plain_open(tmp_path):
    (tmp_path / "plain").write_bytes(b"x")  # 0o666 less the umask (0o644 where it is 0o022)
    save_image(make_image(20, 20, 0), tmp_path / "a.png")
    with atomic_write(tmp_path / "b.bin") as f:
        f.write(b"x")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes["a.png"] == modes["b.bin"] == modes["plain"], modes  # not mkstemp's 0o600


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.png.{dead.stdout.strip()}.k2j4{TMP_SUFFIX}"
    live = tmp_path / f".b.png.{__import__('os').getpid()}.x9y8{TMP_SUFFIX}"
    other = tmp_path / ".notes.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


@pytest.mark.parametrize(
    ("mode", "options"),
    [("RGB", {"quality": 75}), ("RGB", {"quality": 95, "subsampling": 0}), ("RGB", {"progressive": True}), ("L", {})],
)
def test_jpegs_decode_to_pillows_pixels(tmp_path, mode, options):
    path = tmp_path / "photo.jpg"
    tensor_to_pil(make_image(48, 40, 3)).convert(mode).save(path, **options)
    t = load_image(path)
    assert t.shape == (3, 48, 40) and t.dtype == torch.float32
    assert torch.equal(t, pillow_decode(path))


def test_the_bundled_photos_decode_to_pillows_pixels():
    paths = sorted((ROOT / "examples").rglob("*.jpg"))
    assert len(paths) == 7
    for path in paths:
        assert torch.equal(load_image(path), pillow_decode(path)), path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    tensor_to_pil(make_image(24, 40, 0)).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    t = load_image(tmp_path / "phone.jpg")
    assert t.shape == ((3, 24, 40) if orientation < 5 else (3, 40, 24))
    assert torch.equal(t, pillow_decode(tmp_path / "phone.jpg"))


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("cmyk.jpg", flat("CMYK", (0, 255, 255, 0))),  # CMYK (Adobe stores it inverted): Pillow knows the variants
        ("palette.gif", flat("RGB", (0, 0, 255)).convert("P")),
        ("photo.png", flat("RGB", (255, 0, 0))),
        ("photo.webp", flat("RGB", (0, 255, 0))),
    ],
)
def test_other_formats_decode_to_pillows_pixels(tmp_path, name, image):
    image.save(tmp_path / name)
    assert torch.allclose(load_image(tmp_path / name), pillow_decode(tmp_path / name).float(), atol=1 / 255)


def test_a_cut_jpeg_is_refused_with_the_reason(tmp_path):
    (tmp_path / "cut.jpg").write_bytes(jpeg_bytes()[:700])
    with pytest.raises(ImageError, match="cut.jpg: cannot read image, truncated or corrupt"):
        load_image(tmp_path / "cut.jpg")


def test_the_command_starts_without_torchvision():
    """torchvision's import (it imports torch._dynamo) took 1.5-2 s of every command's start."""
    code = "import sys, stylize.cli, stylize.jobs, stylize.stylizer; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_grid_layout():
    red, blue = torch.zeros(3, 20, 30), torch.zeros(3, 10, 10)
    red[0], blue[2] = 1, 1
    sheet = np.array(make_grid([[red, blue, red], [blue]], size=8, pad=2)).astype(int)
    assert sheet.shape == (2 * (8 + 2) + 2, 3 * (8 + 2) + 2, 3)  # 2 x 3 tiles of 8 px, 2 px apart and from the edges
    tiles = np.zeros(sheet.shape[:2], bool)

    def tile(i: int, j: int) -> np.ndarray:
        tiles[2 + i * 10 : 10 + i * 10, 2 + j * 10 : 10 + j * 10] = True
        return sheet[2 + i * 10 : 10 + i * 10, 2 + j * 10 : 10 + j * 10]

    assert (tile(0, 0) == [255, 0, 0]).all() and (tile(0, 1) == [0, 0, 255]).all() and (tile(0, 2) == [255, 0, 0]).all()
    assert (tile(1, 0) == [0, 0, 255]).all() and (tile(1, 1) == 255).all() and (tile(1, 2) == 255).all()  # short row
    assert (sheet[~tiles] == 255).all()  # white between and around the tiles


def test_a_large_image_is_shrunk_while_it_is_decoded(tmp_path, monkeypatch):
    jpeg, png = tmp_path / "big.jpg", tmp_path / "big.png"
    picture = tensor_to_pil(make_image(1200, 1600, 4))
    picture.save(jpeg, quality=95)
    picture.save(png)
    drafts, real = [], JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(
        JpegImagePlugin.JpegImageFile, "draft", lambda im, mode, size: drafts.append(size) or real(im, mode, size)
    )
    for path in (jpeg, png):
        full, small = load_image(path), load_image(path, max_side=400)
        assert small.shape == (3, 300, 400)
        assert (small - limit_long(full, 400)).abs().mean() < 2 / 255  # the same picture, near enough
    assert drafts == [(400, 300)]  # the JPEG decoded at a quarter of its size, by Pillow's draft mode
    assert load_image(jpeg, max_side=2000).shape == (3, 1200, 1600)  # a smaller image as it is
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": shrunk, then turned upright
    for name in ("phone.jpg", "phone.png"):
        picture.save(tmp_path / name, exif=exif.tobytes())
        upright = load_image(tmp_path / name)
        assert upright.shape == (3, 1600, 1200)
        assert (load_image(tmp_path / name, max_side=400) - limit_long(upright, 400)).abs().mean() < 2 / 255
