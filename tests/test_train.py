import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, write_image

from stylize.models import Decoder, Encoder, adain
from stylize.training import loop as T
from stylize.training import losses as L
from stylize.training import run as R
from stylize.training.config import load_config
from stylize.weights import read_state


@pytest.fixture
def smoke(tmp_path, image_dirs, encoder_path):
    content, style = image_dirs

    def make(*overrides: str, out: str = "run"):
        sets = [f"content_dir={content}", f"style_dir={style}", f"encoder={encoder_path}",
                f"out_dir={tmp_path / out}", *overrides]  # fmt: skip
        return load_config(ROOT / "configs" / "smoke.yaml", sets)

    return make


def test_short_run_lowers_the_loss(smoke, tmp_path):
    cfg = smoke("steps=40", "lr=1e-3", "sample_every=40", "checkpoint_every=40")
    T.train(cfg)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == 40
    first = sum(float(r["loss"]) for r in rows[:8]) / 8
    last = sum(float(r["loss"]) for r in rows[-8:]) / 8
    assert last < 0.7 * first, (first, last)
    assert (tmp_path / "run" / "samples" / "step_000040.png").exists()
    assert (tmp_path / "run" / "decoder.pth").exists()


def test_resume_is_exact(smoke):
    T.train(smoke("steps=6", out="straight"))
    T.train(smoke("steps=3", out="split"))
    T.train(smoke("steps=6", out="split"))  # resumes from step 3
    a, b = (
        read_state(smoke(out="straight").out_dir + "/decoder.pth"),
        read_state(smoke(out="split").out_dir + "/decoder.pth"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = torch.load(smoke(out="split").out_dir + "/checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["config"]["steps"] == 6
    assert set(ckpt) >= {"decoder", "optimizer", "rng", "config"}


def test_corrupt_checkpoint_falls_back_to_previous(smoke, capsys):
    cfg = smoke("steps=4")
    T.train(cfg)
    (ckpt := R.Run(cfg).ckpt).write_bytes(b"garbage")
    assert R.Run(cfg).load()["step"] == 2  # checkpoint_prev.pt, written at step 2
    assert "unreadable" in capsys.readouterr().err + capsys.readouterr().out or ckpt.exists()


def test_broken_training_images_are_skipped(smoke, image_dirs):
    content, _ = image_dirs
    (content / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (content / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipping"):
        T.train(smoke("steps=3"))


def test_interrupt_writes_a_checkpoint(smoke, monkeypatch):
    cfg = smoke("steps=10", "checkpoint_every=100")
    real, calls = L.terms, []

    def interrupt_on_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(L, "terms", interrupt_on_third)
    with pytest.raises(SystemExit) as exit_info:
        T.train(cfg)
    assert exit_info.value.code == 130
    assert R.Run(cfg).load()["step"] == 2


def test_cli_reports_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        T.main(["--config", str(bad)])
    assert exit_info.value.code == 2
    assert "unknown config key 'stepz'" in capsys.readouterr().err


def main_error(content: Path, style: Path, encoder: Path, out: Path, capsys) -> str:
    """Run train.py's main on the smoke config; it must exit 2. Returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        sets = [f"encoder={encoder}", f"content_dir={content}", f"style_dir={style}", f"out_dir={out}"]
        T.main(["--config", str(ROOT / "configs" / "smoke.yaml"), *(a for kv in sets for a in ("--set", kv))])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_empty_data_folder_is_a_clear_error(tmp_path, encoder_path, capsys):
    (tmp_path / "nothing").mkdir()
    write_image(tmp_path / "x" / "a.png", 40, 40, 0)
    err = main_error(tmp_path / "nothing", tmp_path / "x", encoder_path, tmp_path / "r", capsys)
    assert f"{tmp_path / 'nothing'}: no images found" in err


def train_command(cfg_dir, image_dirs, encoder_path, steps: int, *overrides: str) -> list[str]:
    content, style = image_dirs
    sets = [f"content_dir={content}", f"style_dir={style}", f"encoder={encoder_path}", f"out_dir={cfg_dir}",
            f"steps={steps}", "checkpoint_every=2", "sample_every=1000", "threads=1", *overrides]  # fmt: skip
    return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "smoke.yaml")] + [
        arg for s in sets for arg in ("--set", s)
    ]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"training ended early: {proc.communicate()}"
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def logged_steps(out) -> int:
    path = out / "log.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def test_sigterm_then_sigkill_then_resume_to_the_end(tmp_path, image_dirs, encoder_path):
    """A scheduler's SIGTERM writes a checkpoint and exits; after a SIGKILL a rerun resumes
    from the last checkpoint and finishes, with one log row per step and no temporary files."""
    out, steps = tmp_path / "run", 24
    cmd = train_command(out, image_dirs, encoder_path, steps)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (out / "checkpoint.pt").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130 and "interrupted: checkpoint at step" in text, text
    first = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < first < steps

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: logged_steps(out) >= first + 3, proc)  # so a checkpoint after `first` is written
    proc.kill()  # SIGKILL: no chance to save anything
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL and f"resuming {out} at step {first}" in text, text
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert first < killed_at < steps

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resuming {out} at step {killed_at}" in done.stderr + done.stdout
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == steps
    assert [int(r["step"]) for r in csv.DictReader(open(out / "log.csv"))] == list(range(1, steps + 1))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_still_checkpoints(tmp_path, image_dirs, encoder_path, signum):
    """Ctrl-C signals every process of the terminal's group, and schedulers (or `pkill -f`) the data
    loader's workers as well as the main process: the workers must leave the stop to it."""
    out = tmp_path / "run"
    cmd = train_command(out, image_dirs, encoder_path, 10_000, "num_workers=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    wait_for(lambda: (out / "checkpoint.pt").exists(), proc)
    os.killpg(proc.pid, signum)
    text = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130 and "interrupted: checkpoint at step" in text, text
    assert "Traceback" not in text, text


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(smoke, capsys):
    cfg = smoke("steps=2")
    T.train(cfg)
    R.Run(cfg).ckpt.write_bytes(b"garbage")
    torch.save({"conv.weight": torch.zeros(1)}, R.Run(cfg).prev)  # readable, but not a checkpoint
    with pytest.raises(R.CheckpointError, match="no usable checkpoint"):
        R.Run(cfg).load()
    err = capsys.readouterr()
    assert "checkpoint.pt is unreadable" in err.out + err.err
    assert "checkpoint_prev.pt is not a training checkpoint" in err.out + err.err


def test_data_folder_with_only_broken_images_is_a_clear_error(image_dirs, encoder_path, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    err = main_error(bad, image_dirs[1], encoder_path, tmp_path / "r", capsys)
    assert f"{bad}: none of the 2 images can be read" in err


def test_resume_drops_log_rows_past_the_checkpoint(smoke, tmp_path):
    cfg = smoke("steps=4")
    T.train(cfg)
    log = tmp_path / "run" / "log.csv"
    header, *rows = log.read_text().splitlines(keepends=True)
    log.write_text(header + "".join(rows) + "5,0.001,1.0,1")  # steps a SIGKILL cut short, half a row
    R.Run(cfg).trim_log(2)
    assert [int(r["step"]) for r in csv.DictReader(open(log))] == [1, 2]
    R.Run(cfg).trim_log(2)  # nothing more to drop: the file is left alone
    assert [int(r["step"]) for r in csv.DictReader(open(log))] == [1, 2]


def test_reconstruction_warm_start_then_adain(smoke, tmp_path):
    T.train(smoke("steps=24", "recon_steps=20", "lr=1e-3"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [r["stage"] for r in rows] == ["reconstruct"] * 20 + ["adain"] * 4
    recon = [float(r["content"]) for r in rows[:20]]  # the L1 distance to the photos
    assert sum(recon[-4:]) < 0.8 * sum(recon[:4]), recon
    assert all(float(r["style"]) == 0 for r in rows[:20]) and all(float(r["style"]) > 0 for r in rows[20:])


def test_a_decoder_trained_elsewhere_goes_on_from_its_step(smoke, tmp_path, decoder_path):
    T.train(smoke("steps=8", f"init_decoder={decoder_path}", "init_step=5"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [6, 7, 8]
    assert float(rows[0]["lr"]) == pytest.approx(1e-3 / (1 + 5e-5 * 5))


def test_a_cooldown_on_a_copy_of_the_run_takes_the_lr_linearly_to_zero(smoke, tmp_path):
    T.train(smoke("steps=6"))
    shutil.copytree(tmp_path / "run", tmp_path / "cool")  # as docs/training.md says: the run itself goes on
    T.train(smoke("steps=10", "cooldown_start=6", "cooldown_steps=4", out="cool"))
    rows = list(csv.DictReader(open(tmp_path / "cool" / "log.csv")))[6:]
    full = [1e-3 / (1 + 5e-5 * s) for s in range(6, 10)]  # steps 7..10 train at the lr of steps 6..9
    assert [int(r["step"]) for r in rows] == [7, 8, 9, 10]
    assert [float(r["lr"]) for r in rows] == pytest.approx([lr * f for lr, f in zip(full, [1, 0.75, 0.5, 0.25])])
    assert T.learning_rate(smoke("cooldown_start=6", "cooldown_steps=4"), 10) == 0.0
    assert len(list(csv.DictReader(open(tmp_path / "run" / "log.csv")))) == 6


def test_from_weights_goes_on_from_the_manifest(tmp_path, image_dirs, encoder_path, decoder_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "decoder.pth").write_bytes(decoder_path.read_bytes())
    (weights / "MANIFEST.json").write_text('{"decoder.pth": {"steps": 5, "images_seen": 40}}')
    monkeypatch.setattr(T, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(T, "DEFAULT_DECODER", weights / "decoder.pth")
    content, style = image_dirs
    sets = [f"content_dir={content}", f"style_dir={style}", f"encoder={encoder_path}", f"out_dir={tmp_path / 'r'}",
            "steps=7"]  # fmt: skip
    args = [a for s in sets for a in ("--set", s)]
    T.main(["--config", str(ROOT / "configs" / "smoke.yaml"), "--from-weights", *args])
    rows = list(csv.DictReader(open(tmp_path / "r" / "log.csv")))
    assert [(int(r["step"]), int(r["images"])) for r in rows] == [(6, 42), (7, 44)]
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["images_seen"] == 44


def test_skips_trained_from_a_decoder_without_them_learn_and_resume(smoke, tmp_path, decoder_path):
    sets = [f"init_decoder={decoder_path}", "skip_taps=[relu2_1, relu3_1]", "skip_lr_scale=10", "identity_weight=1"]
    T.train(smoke("steps=3", *sets))
    T.train(smoke("steps=5", *sets))  # resumes, the skips' own learning rate and all
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 5
    assert [g.get("lr_scale", 1.0) for g in ckpt["optimizer"]["param_groups"]] == [1.0, 10.0]
    state = read_state(tmp_path / "run" / "decoder.pth")
    assert state["skips.relu2_1.weight"].any() and state["skips.relu3_1.weight"].any()  # they start at zero
    assert float(list(csv.DictReader(open(tmp_path / "run" / "log.csv")))[-1]["identity"]) > 0
    T.train(smoke("steps=2", "recon_steps=2", "skip_taps=[relu1_1]", out="recon"))  # the warm start too
    with pytest.raises(R.CheckpointError, match="has skips from relu2_1, relu3_1, the config asks for relu1_1"):
        T.train(smoke("steps=7", "skip_taps=[relu1_1]"))


WEIGHTS = {"content": 1.0, "style": 10.0, "style_half": 0.0, "identity": 0.0, "laplacian": 0.0, "ssim": 0.0}


def encoded(enc: Encoder, content: torch.Tensor, style: torch.Tensor, half: bool = False) -> L.Batch:
    return T.encode(enc, T.Images(content, style), (), torch.device("cpu"), half=half)


def test_identity_term_is_the_l1_of_the_content_decoded_from_its_own_features():
    torch.manual_seed(0)
    enc, dec = Encoder(), Decoder()
    b = encoded(enc, torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32))
    with_identity = L.terms(enc, dec, b, WEIGHTS | {"identity": 1.0})
    with torch.no_grad():
        expected = (dec(b.feats[:2]) - b.content[:2]).abs().mean()
    assert with_identity["identity"].item() == pytest.approx(expected.item(), rel=1e-4)
    # the pairs' own terms do not change when the identity images share the decoder call
    plain = L.terms(enc, dec, b, WEIGHTS)
    assert plain["identity"].item() == 0.0
    for k in ("content", "style"):
        assert with_identity[k].item() == pytest.approx(plain[k].item(), rel=1e-5)


def test_a_step_on_crops_read_from_disk_encodes_each_content_image_once():
    # the decoder's skip taps come from the same pass through VGG as relu4_1, not from a second
    torch.manual_seed(0)
    enc, dec = Encoder(), Decoder(skip_taps=("relu2_1", "relu3_1"))
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    seen = []
    enc.conv1_1.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    cfg = load_config(None, ["device=cpu", "skip_taps=[relu2_1, relu3_1]"])
    opt = torch.optim.Adam(dec.parameters(), lr=0.0)
    T.train_step(enc, dec, opt, T.Images(content, style), cfg, lr=0.0)
    assert sum(torch.equal(x, content) for x in seen) == 1 and len(seen) == 3  # content, style, output
    b = T.encode(enc, T.Images(content, style), dec.skip_taps, torch.device("cpu"))
    x = content.to(memory_format=torch.channels_last)  # as training lays images out
    alone = enc(x, last="relu3_1")
    assert all(torch.equal(b.taps[t], alone[t]) for t in dec.skip_taps) and torch.equal(b.feats, enc.relu4_1(x))


def test_identity_weight_trains_alpha_zero_and_is_logged(smoke, tmp_path):
    T.train(smoke("steps=30", "recon_steps=0", "identity_weight=500", "lr=1e-3", "batch_size=2"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    identity = [float(r["identity"]) for r in rows]
    assert all(v > 0 for v in identity)
    assert sum(identity[-5:]) < 0.8 * sum(identity[:5]), identity
    T.train(smoke("steps=2", out="plain"))
    assert {r["identity"] for r in csv.DictReader(open(tmp_path / "plain" / "log.csv"))} == {"0.0"}


@pytest.mark.parametrize("term, loss_fn", [("laplacian", L.laplacian_loss), ("ssim", L.ssim_loss)])
def test_the_photo_s_edge_and_structure_terms_are_its_losses_weighed_and_logged(smoke, tmp_path, term, loss_fn):
    torch.manual_seed(0)
    enc, dec = Encoder(), Decoder()
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    b = encoded(enc, content, style)
    got = L.terms(enc, dec, b, WEIGHTS | {term: 1.0})[term]
    with torch.no_grad():
        out = dec(adain(b.feats, *L.split_stats(b.stats)["relu4_1"]))
    assert got.item() == pytest.approx(loss_fn(out, content).item(), rel=1e-4)
    assert L.terms(enc, dec, b, WEIGHTS)[term].item() == 0.0  # off unless weighed
    # weighed by its weight into the loss the step follows
    cfg = load_config(None, ["device=cpu", "style_weight=0", f"{term}_weight=3"])
    before = [p.detach().clone() for p in dec.parameters()]
    opt = torch.optim.Adam(dec.parameters())
    terms = T.train_step(enc, dec, opt, T.Images(content, style), cfg, 1e-3)
    assert terms[term].item() > 0
    assert terms["loss"].item() == pytest.approx(terms["content"].item() + 3 * terms[term].item(), rel=1e-5)
    assert any(not torch.equal(a, p) for a, p in zip(before, dec.parameters()))
    T.train(smoke("steps=2", f"{term}_weight=1"))
    assert all(float(r[term]) > 0 for r in csv.DictReader(open(tmp_path / "run" / "log.csv")))


def test_the_half_scale_style_term_scores_both_images_halved(smoke, tmp_path):
    torch.manual_seed(0)
    enc, dec = Encoder(), Decoder()
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    b = encoded(enc, content, style, half=True)
    got = L.terms(enc, dec, b, WEIGHTS | {"style_half": 1.0})["style_half"]
    with torch.no_grad():
        out = dec(adain(b.feats, *L.split_stats(b.stats)["relu4_1"]))
        want = L.style_loss(enc(L.half_scale(out)), L.tap_stats(enc(L.half_scale(style))))
    assert got.item() == pytest.approx(want.item(), rel=1e-4) and got.item() > 0
    assert T.loss_weights(load_config(None, ["style_weight=20", "style_half_weight=0.5"]))["style_half"] == 10.0
    T.train(smoke("steps=2", "style_half_weight=0.5"))
    assert all(float(r["style_half"]) > 0 for r in csv.DictReader(open(tmp_path / "run" / "log.csv")))


def test_a_log_from_an_older_train_py_gets_the_new_columns(smoke, tmp_path):
    cfg = smoke("steps=3")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.csv").write_text("step,stage,loss\n1,adain,5.0\n")
    R.Run(cfg).log({"step": 2, "stage": "adain", "loss": 4.0, "identity": 0.5})
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert rows == [
        {"step": "1", "stage": "adain", "loss": "5.0", "identity": ""},
        {"step": "2", "stage": "adain", "loss": "4.0", "identity": "0.5"},
    ]


def test_the_moving_average_is_kept_resumed_and_is_the_decoder_written(smoke, tmp_path, decoder_path):
    T.train(smoke("steps=1001", f"init_decoder={decoder_path}", "init_step=1000", "ema_decay=0.75", out="one"))
    ckpt = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    before, after, avg = read_state(decoder_path), ckpt["decoder"], ckpt["ema"]
    for k in avg:  # one step: 0.75 x the decoder before it + 0.25 x the decoder after it
        assert torch.allclose(avg[k], 0.75 * before[k] + 0.25 * after[k], atol=1e-7)
    assert not torch.equal(avg["0.weight"], after["0.weight"])
    for path in ("decoder.pth", "checkpoint.pt"):  # what inference and export-decoder read
        assert all(torch.equal(read_state(tmp_path / "one" / path)[k], avg[k]) for k in avg)
    T.train(smoke("steps=6", "ema_decay=0.75", out="straight"))
    T.train(smoke("steps=3", "ema_decay=0.75", out="split"))
    T.train(smoke("steps=6", "ema_decay=0.75", out="split"))  # the average goes on from its checkpoint
    a, b = (read_state(tmp_path / out / "decoder.pth") for out in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_moving_average_follows_a_run_s_first_steps_closely():
    start, trained = Decoder(), Decoder()
    ema = R.Ema(start, 0.999)
    ema.update(trained, step=0)  # decay 1/10 at step 0, not 0.999: the random start fades at once
    want = {k: 0.1 * start.state_dict()[k] + 0.9 * v for k, v in trained.state_dict().items()}
    assert all(torch.allclose(ema.model.state_dict()[k], want[k], atol=1e-7) for k in want)
