"""`python -m stylize.tools.bench`: our stylization and training against the reference way, on one machine.

The reference is a minimal, faithful copy of the original AdaIN pipeline (the authors' code as
ported in the widely used pytorch-AdaIN: test.py and train.py): fp32, eager, NCHW, batch 1,
ReflectionPad2d + Conv2d + ReLU modules, the style re-encoded for every pair, with our weights
copied in. Ours is the CLI's path (`stylize.jobs.run` on `stylize.cli.parse_args`, its default
settings); both load their networks once, outside the timings, and go from files on disk to files
on disk.

Each measurement runs in its own process, so peak memory is its own: resident memory on the
CPU (the process, torch included), allocated memory on the GPU. Prints a Markdown report
(paste it into BENCHMARKS.md) and, with --json, writes the raw numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms
from torchvision.utils import save_image

from stylize import cli, jobs
from stylize.batch import Report
from stylize.models import POOL_AFTER, STYLE_TAPS, VGG_CONVS, Decoder, Encoder, adain, mean_std
from stylize.options import DEFAULT_DECODER, DEFAULT_ENCODER, EXAMPLES_DIR
from stylize.stylizer import Stylizer, pick_device
from stylize.training.config import TrainConfig
from stylize.training.loop import Images, train_step
from stylize.weights import load_decoder, load_encoder, load_into

# The reference way ---------------------------------------------------------------------------


def reference_nets(encoder: Encoder, decoder: Decoder) -> tuple[list[nn.Sequential], nn.Sequential]:
    """The original networks' layout: the encoder as four slices ending at relu1_1..relu4_1 (as
    the reference training code cuts it), the decoder as one Sequential; our weights inside (the
    paper's decoder: a decoder's skips are left out)."""
    slices, layers = [], []
    for name, _, _ in VGG_CONVS:
        layers += [nn.ReflectionPad2d(1), _copy_conv(getattr(encoder, name)), nn.ReLU()]
        if "relu" + name[4:] in STYLE_TAPS:
            slices.append(nn.Sequential(*layers))
            layers = []
        if name in POOL_AFTER:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    dec = []
    for m in decoder.layers():
        dec += [nn.ReflectionPad2d(1), _copy_conv(m)] if isinstance(m, nn.Conv2d) else [type(m)()]
        if isinstance(m, nn.Upsample):
            dec[-1] = nn.Upsample(scale_factor=2, mode="nearest")
    return [s.eval().requires_grad_(False) for s in slices], nn.Sequential(*dec)


def _copy_conv(conv: nn.Conv2d) -> nn.Conv2d:
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, 3)  # the padding is a module before it
    plain.load_state_dict(conv.state_dict())
    return plain


def ref_encode(slices: list[nn.Sequential], x: torch.Tensor) -> list[torch.Tensor]:
    taps = []
    for s in slices:
        x = s(x)
        taps.append(x)
    return taps


def ref_load(path: Path, device: torch.device) -> torch.Tensor:
    return transforms.ToTensor()(Image.open(path).convert("RGB")).unsqueeze(0).to(device)


def ref_save(img: torch.Tensor, path: Path) -> None:
    save_image(img, path)


@torch.no_grad()
def ref_stylize(slices: list[nn.Sequential], dec: nn.Sequential, content: torch.Tensor, style: torch.Tensor):
    c, s = ref_encode(slices, content)[-1], ref_encode(slices, style)[-1]
    return dec(adain(c, *mean_std(s))).clamp(0, 1)


def ref_pair(nets, content: Path, style: Path, out: Path, device: torch.device) -> None:
    ref_save(ref_stylize(*nets, ref_load(content, device), ref_load(style, device)), out)


def ref_train_step(slices, dec, opt, content, style, style_weight: float = 10.0) -> float:
    style_taps = ref_encode(slices, style)
    t = adain(ref_encode(slices, content)[-1], *mean_std(style_taps[-1]))
    out_taps = ref_encode(slices, dec(t))
    loss_c = F.mse_loss(out_taps[-1], t)
    loss_s = sum(F.mse_loss(a, b) for o, s in zip(out_taps, style_taps) for a, b in zip(mean_std(o), mean_std(s)))
    loss = loss_c + style_weight * loss_s
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


# Measurements (each in its own process) -------------------------------------------------------


def measure(spec: dict) -> dict:
    device = pick_device(spec["device"])
    torch.manual_seed(0)
    encoder, decoder = load_encoder(DEFAULT_ENCODER), load_decoder(DEFAULT_DECODER)
    kind, impl, folder = spec["kind"], spec.get("impl"), Path(spec["folder"])
    if kind == "ceiling":
        return {"tflops": matmul_ceiling(device)}
    if kind == "train":
        return timed_train(impl, encoder, decoder, device, spec["steps"])
    if kind == "preview":
        return preview(folder, spec["size"], spec["repeats"])
    if kind == "seams":  # 2 x 2 tiles against one pass over the whole image
        content = ref_load(folder / "content" / "000.jpg", device)[0]
        style = ref_load(folder / "style" / "000.jpg", device)[0]
        side = max(content.shape[-2:])
        tiled, whole = (Stylizer(encoder, decoder, device, tile) for tile in (side // 2, side))
        a, b = (s.stylize(content, s.style_stats(style)) for s in (tiled, whole))
        return {"max_abs": (a - b).abs().max().item(), "tile": tiled.engine.tile, "side": side}
    contents, styles = sorted((folder / "content").iterdir()), sorted((folder / "style").iterdir())
    out = Path(tempfile.mkdtemp(dir=folder))
    if impl == "reference":
        slices, dec = reference_nets(encoder, decoder)
        nets = [s.to(device) for s in slices], dec.to(device)

        def once(cs: list[Path]) -> None:
            for c in cs:
                for s in styles:
                    ref_pair(nets, c, s, out / f"{c.stem}_{s.stem}.jpg", device)
    else:
        stylizer = Stylizer(encoder, decoder, device)
        stages = Stages()
        stages.wrap(jobs, "load_image", "read", split=lambda path, **_: Path(path).parent.name == "style")
        stages.wrap(jobs, "save_image", "write")
        stages.wrap(stylizer, "style_stats", "encode the painting")
        stages.wrap(stylizer, "encode", "encode the photo")
        stages.wrap(stylizer, "stylize", "AdaIN and decode")

        def once(cs: list[Path]) -> None:
            args = ["--content", str(cs[0] if len(cs) == 1 else cs[0].parent), "--style", str(folder / "style")]
            if len(styles) == 1:
                args[-1] = str(styles[0])
            args += ["--output", str(out), "--overwrite", "--content-size", "0", "--style-size", "0", "--max-size", "0"]
            args += ["--refine", str(spec.get("refine", 0))]
            report = Report()
            jobs.run(cli.parse_args(args), report, stylizer=stylizer)
            assert not report.failed, report.failed

    if impl != "big":  # one very large image is stylized once, as a user would: its first run is what they wait for
        once(contents[:1])  # warm-up: allocator, kernels, cudnn's choice
    _reset_peak(device)
    if impl != "reference":
        stages.seconds.clear()
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        once(contents)
        _sync(device)
        times.append(time.perf_counter() - t0)
    result = {"seconds": statistics.median(times), "images": len(contents) * len(styles), "peak_mb": _peak_mb(device)}
    if impl != "reference":
        result["stages"] = {k: v / spec["repeats"] for k, v in stages.seconds.items()}
    if kind == "pair" and impl == "ours":
        result.update(fp32_error(encoder, decoder, contents[0], styles[0], device))
    return result


class Stages:
    """Seconds spent in each stage of our run, summed over calls: functions wrapped where the
    command line's code calls them (reads and writes run in worker threads, beside the networks)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: object, name: str, stage: str, split: Callable[..., bool] | None = None) -> None:
        """Time `owner.name` as `stage` (as "stage paintings" or "stage photos" by `split(*args)`)."""
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                key = stage if split is None else f"{stage} {'paintings' if split(*args, **kwargs) else 'photos'}"
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)


def preview(folder: Path, size: int, repeats: int) -> dict:
    """The web page's preview: POST /api/stylize at `size` px through the server's own code (in
    process), the painting already encoded, as when the page sends it again with the next photo
    or setting; the median of `repeats` requests after a warm-up."""
    from starlette.testclient import TestClient

    from stylize.web import create_app

    photo, painting = ((folder / k / "000.jpg").read_bytes() for k in ("content", "style"))
    files = {"content": ("photo.jpg", photo), "style": ("painting.jpg", painting)}
    with TestClient(create_app(Stylizer.from_pretrained(device="cpu")), base_url="http://127.0.0.1") as client:
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            r = client.post("/api/stylize", files=files, data={"size": str(size), "format": "jpeg"})
            assert r.status_code == 200, r.text
            times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times[1:]), "peak_mb": _peak_mb(torch.device("cpu"))}


# The reference's test.py as a process of its own: torch, torchvision and the networks pickled by
# the parent (nn modules only), then every pair encoded and decoded, as pytorch-AdaIN's test.py.
REFERENCE_PROCESS = """
import sys
from pathlib import Path
import torch
from PIL import Image
from torchvision import transforms
from torchvision.utils import save_image

def mean_std(f, eps=1e-5):
    n, c = f.shape[:2]
    var = f.view(n, c, -1).var(dim=2) + eps
    return f.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)

def encode(x):
    for s in slices:
        x = s(x)
    return x

nets, contents, styles, out = sys.argv[1:5]
slices, dec = torch.load(nets, weights_only=False)
if len(sys.argv) > 5:  # start and loading only
    raise SystemExit
load = lambda p: transforms.ToTensor()(Image.open(p).convert("RGB")).unsqueeze(0)
with torch.no_grad():
    for c in sorted(Path(contents).iterdir()):
        for s in sorted(Path(styles).iterdir()):
            cf, sf = encode(load(c)), encode(load(s))
            cm, cs = mean_std(cf)
            sm, ss = mean_std(sf)
            save_image(dec((cf - cm) / cs * ss + sm).clamp(0, 1), Path(out) / f"{c.stem}_{s.stem}.jpg")
"""


def processes(folder: Path, repeats: int) -> dict[str, dict]:
    """Whole processes, as a user runs them: the reference's test.py and our command on every
    photo x painting of `folder`, and each of them only starting and loading its networks; the
    median of `repeats` runs, each from a new process."""
    nets = folder / "reference_nets.pt"
    slices, dec = reference_nets(load_encoder(DEFAULT_ENCODER), load_decoder(DEFAULT_DECODER))
    torch.save((slices, dec), nets)
    out = Path(tempfile.mkdtemp(dir=folder))
    ref = [sys.executable, "-c", REFERENCE_PROCESS, str(nets), str(folder / "content"), str(folder / "style"), str(out)]
    ours = [sys.executable, "-m", "stylize.cli", "--content", str(folder / "content"), "--style", str(folder / "style")]
    ours += ["--output", str(out), "--overwrite", "--content-size", "0", "--style-size", "0", "--max-size", "0"]
    load = "import stylize.jobs; from stylize.stylizer import Stylizer; Stylizer.from_pretrained(device='cpu')"
    commands = {
        "reference": ref,
        "ours": ours,
        "reference start": [*ref, "start"],
        "ours start": [sys.executable, "-c", load],
    }
    results = {}
    for key, command in commands.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        results[key] = {"seconds": statistics.median(times)}
    return results


def fp32_error(encoder: Encoder, decoder: Decoder, content: Path, style: Path, device: torch.device) -> dict:
    """Our output against the reference's fp32 one, on the same pair (before 8-bit rounding), both
    with the paper's decoder (the reference has no skips)."""
    decoder = load_into(Decoder(), {k: v for k, v in decoder.state_dict().items() if not k.startswith("skips.")}, "")
    c, s = ref_load(content, device), ref_load(style, device)
    stylizer = Stylizer(encoder, decoder, device)
    got = stylizer.stylize(c, stylizer.style_stats(s[0]))
    slices, dec = reference_nets(encoder, decoder)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # true fp32
    want = ref_stylize([m.to(device) for m in slices], dec.to(device), c, s)
    return {"rel_err": ((got - want).norm() / want.norm()).item(), "max_abs_err": (got - want).abs().max().item()}


def timed_train(impl: str, encoder: Encoder, decoder: Decoder, device: torch.device, steps: int) -> dict:
    cfg = TrainConfig()
    batch = [torch.rand(cfg.batch_size, 3, cfg.crop_size, cfg.crop_size) for _ in range(2)]
    if impl == "reference":
        slices, dec = reference_nets(encoder, decoder)
        slices, dec = [s.to(device) for s in slices], dec.to(device)
        opt = torch.optim.Adam(dec.parameters(), lr=cfg.lr)

        def step() -> None:
            ref_train_step(slices, dec, opt, *(x.to(device) for x in batch), cfg.style_weight)
    else:
        encoder = encoder.to(device, memory_format=torch.channels_last)
        decoder = decoder.to(device, memory_format=torch.channels_last).train()
        opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)

        def step() -> None:
            train_step(encoder, decoder, opt, Images(batch[0], batch[1]), cfg, cfg.lr)

    step()
    _sync(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return {"seconds": (time.perf_counter() - t0) / steps, "peak_mb": _peak_mb(device), "batch": cfg.batch_size}


def matmul_ceiling(device: torch.device, n: int = 8192) -> float:
    """bf16 matmul throughput (TFLOP/s): the ceiling the networks' FLOPs are compared with."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    t0, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def model_flops(h: int, w: int) -> tuple[float, float]:
    """FLOPs (2 per multiply-add) of the encoder and of the decoder for an h x w image, as
    the plain networks count them (our 2x2 phase convolutions need fewer)."""
    enc, scale = 0.0, 1
    for name, cin, cout in VGG_CONVS:
        enc += 2 * 9 * cin * cout * (h // scale) * (w // scale)
        scale *= 2 if name in POOL_AFTER else 1
    dec = (
        2
        * 9
        * sum(
            m.in_channels * m.out_channels * (h // s) * (w // s)
            for m, s in zip([m for m in Decoder() if isinstance(m, nn.Conv2d)], (8, 4, 4, 4, 4, 2, 2, 1, 1))
        )
    )
    return enc, dec


# The parent: images, processes, report ---------------------------------------------------------


def make_images(folder: Path, name: str, n: int, size: int, seed: int) -> None:
    """`n` distinct size x size JPEGs cut from the examples (scikit-image photos and the drawn styles)."""
    sources = sorted((EXAMPLES_DIR / name).glob("*.jpg")) or sorted((EXAMPLES_DIR / "content").glob("*.jpg"))
    rng = np.random.default_rng(seed)
    (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        side = int(min(img.size) * rng.uniform(0.6, 1.0))
        x, y = rng.integers(0, img.width - side + 1), rng.integers(0, img.height - side + 1)
        img.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC).save(
            folder / name / f"{i:03d}.jpg", quality=95
        )


def run_one(spec: dict, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "stylize.tools.bench", "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: {spec['kind']} {spec.get('impl', '')} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    sizes = args.sizes or ([256, 512, 1024, 2048] if gpu else [256, 512, 1024])
    contents = args.contents if args.contents is not None else (64 if gpu else 16)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="stylize-bench-") as tmp:
        root = Path(tmp)

        def case(key: str, folder: Path, env: dict[str, str] | None = None, **spec) -> None:
            print(f"bench: {key}", file=sys.stderr, flush=True)
            spec = {"device": args.device, "folder": str(folder), "repeats": args.repeats, **spec}
            results[key] = run_one(spec, env or {})

        for size in sizes:
            make_images(root / f"pair{size}", "content", 1, size, 0)
            make_images(root / f"pair{size}", "style", 1, size, 1)
            for impl in ("reference", "ours"):
                case(f"pair {size} {impl}", root / f"pair{size}", kind="pair", impl=impl)
            if args.ablation and not gpu:
                no_nnpack = {"STYLIZE_NNPACK": "0"}
                case(f"pair {size} ours without NNPACK", root / f"pair{size}", no_nnpack, kind="pair", impl="ours")
        fs = args.folder_size
        if contents:
            make_images(root / "folder", "content", contents, fs, 2)
            make_images(root / "folder", "style", args.styles, fs, 3)
            for impl in ("reference", "ours"):
                case(f"folder {fs} {impl}", root / "folder", kind="folder", impl=impl, repeats=1)
        if args.processes:
            make_images(root / "processes", "content", 4, 512, 8)
            make_images(root / "processes", "style", 2, 512, 9)
            print("bench: whole processes", file=sys.stderr, flush=True)
            results.update({f"process {k}": v for k, v in processes(root / "processes", args.processes).items()})
        if not gpu:
            make_images(root / "preview", "content", 1, 512, 10)
            make_images(root / "preview", "style", 1, 512, 11)
            case("preview 256", root / "preview", kind="preview", size=256)
        if args.refine and 512 in sizes:
            case(f"pair 512 ours refine {args.refine}", root / "pair512", kind="pair", impl="ours", refine=args.refine)
        for impl in ("reference", "ours") if args.train_steps else ():
            case(f"train {impl}", root, kind="train", impl=impl, steps=args.train_steps)
        if args.big:
            make_images(root / "big", "content", 1, args.big, 4)
            make_images(root / "big", "style", 1, 512, 5)
            case(f"big {args.big} ours", root / "big", kind="pair", impl="big", repeats=1)
        if args.seams:
            make_images(root / "seams", "content", 1, args.seams, 6)
            make_images(root / "seams", "style", 1, 512, 7)
            case(f"seams {args.seams}", root / "seams", kind="seams")
        if gpu:
            case("ceiling", root, kind="ceiling")
    print(report(results, args, device, sizes, contents))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict, args: argparse.Namespace, device: torch.device, sizes: list[int], contents: int) -> str:
    ceiling = results.get("ceiling", {}).get("tflops")
    lines = [
        f"Machine: {machine(device)}; torch {torch.__version__}, Python {platform.python_version()}.",
        f"Date: {datetime.date.today()}. Command: `python -m stylize.tools.bench {shlex.join(sys.argv[1:])}`.",
        "",
        "| measurement | reference | ours | speed-up (reference / ours) | ours vs fp32 reference (rel. L2, max abs) |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        ref, ours = results[f"pair {size} reference"], results[f"pair {size} ours"]
        enc, dec = model_flops(size, size)
        lines.append(
            f"| one pair {size}x{size}: latency | {ref['seconds'] * 1e3:.0f} ms, {ref['peak_mb']:.0f} MB "
            f"| {ours['seconds'] * 1e3:.0f} ms, {ours['peak_mb']:.0f} MB{_share(2 * enc + dec, ours, ceiling)} "
            f"| {ref['seconds'] / ours['seconds']:.2f}x | {ours['rel_err']:.1e}, {ours['max_abs_err']:.1e} |"
        )
        if (plain := results.get(f"pair {size} ours without NNPACK")) is not None:
            lines.append(
                f"| same, ours with STYLIZE_NNPACK=0 (oneDNN) | | {plain['seconds'] * 1e3:.0f} ms, "
                f"{plain['peak_mb']:.0f} MB | {ref['seconds'] / plain['seconds']:.2f}x "
                f"| {plain['rel_err']:.1e}, {plain['max_abs_err']:.1e} |"
            )
    if (refined := results.get(f"pair 512 ours refine {args.refine}")) is not None:
        step = (refined["seconds"] - results["pair 512 ours"]["seconds"]) / args.refine
        lines.append(
            f"| one pair 512x512 with --refine {args.refine}: latency | | {refined['seconds']:.1f} s, "
            f"{refined['peak_mb']:.0f} MB ({step * 1e3:.0f} ms per step) | | |"
        )
    fs = args.folder_size
    if contents:
        ref, ours = results[f"folder {fs} reference"], results[f"folder {fs} ours"]
        enc, dec = model_flops(fs, fs)
        work = (contents + args.styles) * enc + contents * args.styles * dec  # what ours has to compute
        speedup = ref["seconds"] / ours["seconds"]
        lines.append(
            f"| folder {contents} x {args.styles} at {fs}x{fs}: images/s | {ref['images'] / ref['seconds']:.2f} "
            f"| {ours['images'] / ours['seconds']:.2f}{_share(work, ours, ceiling)} | {speedup:.2f}x | |"
        )
    if args.processes:
        ref, ours = results["process reference"], results["process ours"]
        lines.append(
            f"| 4 photos x 2 paintings at 512x512, whole processes: seconds | {ref['seconds']:.1f} "
            f"| {ours['seconds']:.1f} | {ref['seconds'] / ours['seconds']:.2f}x | |"
        )
        ref, ours = results["process reference start"], results["process ours start"]
        lines.append(
            f"| - of which starting and loading the networks | {ref['seconds']:.1f} | {ours['seconds']:.1f} | | |"
        )
    if (view := results.get("preview 256")) is not None:
        lines.append(
            f"| the page's 256 px preview (a 512 px photo; the painting encoded already): latency | "
            f"| {view['seconds'] * 1e3:.0f} ms, {view['peak_mb']:.0f} MB | | |"
        )
    if args.train_steps:
        ref, ours = results["train reference"], results["train ours"]
        lines.append(
            f"| training, batch {ref['batch']} at 256x256: iterations/s | {1 / ref['seconds']:.3f}, "
            f"{ref['peak_mb']:.0f} MB | {1 / ours['seconds']:.3f}, {ours['peak_mb']:.0f} MB "
            f"| {ref['seconds'] / ours['seconds']:.2f}x | |"
        )
    if args.big:
        big = results[f"big {args.big} ours"]
        lines.append(
            f"| one {args.big}x{args.big} image (style 512x512), in tiles, once in a new process | "
            f"| {big['seconds']:.1f} s, peak {big['peak_mb']:.0f} MB | | |"
        )
    if args.seams:
        seams = results[f"seams {args.seams}"]
        lines.append(
            f"| one {args.seams}x{args.seams} image in {seams['tile']} px tiles vs one pass | | | | "
            f"max abs difference {seams['max_abs']:.1e} |"
        )
    if ceiling:
        lines.append(f"\nMeasured bf16 matmul ceiling: {ceiling:.0f} TFLOP/s (8192^3 matmuls).")
    lines += stage_table(results, args, sizes, contents)
    return "\n".join(lines)


STAGES = (
    "read paintings", "encode the painting", "read photos", "encode the photo", "AdaIN and decode", "write"
)  # fmt: skip
MAIN_THREAD = ("read paintings", "encode the painting", "encode the photo", "AdaIN and decode")


def stage_table(results: dict, args: argparse.Namespace, sizes: list[int], contents: int) -> list[str]:
    """Where our time goes: each stage's time in one pair at 512 px (ms) and in the folder run (s).
    The photos are read and the outputs written in worker threads, beside the networks."""
    runs = {"one pair 512x512 (ms)": ("pair 512 ours", 1e3)} if 512 in sizes else {}
    if contents:
        runs[f"folder {contents} x {args.styles} at {args.folder_size} px (s)"] = (f"folder {args.folder_size} ours", 1)
    runs = {name: (results[key], scale) for name, (key, scale) in runs.items() if "stages" in results.get(key, {})}
    if not runs:
        return []

    def row(name: str, seconds: Callable[[dict], float]) -> str:
        return f"| {name} | " + " | ".join(f"{seconds(r) * k:.{0 if k > 1 else 1}f}" for r, k in runs.values()) + " |"

    lines = ["", f"| stage | {' | '.join(runs)} |", "|---|" + "---|" * len(runs)]
    for stage in STAGES:
        name = stage if stage in MAIN_THREAD else f"{stage} (worker threads)"
        lines.append(row(name, lambda r, stage=stage: r["stages"].get(stage, 0.0)))
    lines.append(
        row(
            "the rest (waiting for reads and writes, the command's own work)",
            lambda r: r["seconds"] - sum(r["stages"].get(t, 0.0) for t in MAIN_THREAD),
        )
    )
    lines.append(row("total", lambda r: r["seconds"]))
    return lines


def _share(flops: float, result: dict, ceiling: float | None) -> str:
    if not ceiling:
        return ""
    achieved = flops / result["seconds"] / 1e12
    return f", {achieved:.1f} TFLOP/s = {achieved / ceiling:.0%} of the ceiling"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()} CPU, {torch.get_num_threads()} threads"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m stylize.tools.bench",
        description="Time stylization (one pair, a folder, one very large image) and training, ours against "
        "the reference AdaIN way, on this machine. About 30 minutes on a 2-core CPU.",
    )
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda (default: auto)")
    p.add_argument("--sizes", type=int, nargs="*", help="pair sizes (default: 256 512 1024, and 2048 on a GPU)")
    p.add_argument("--folder-size", type=int, default=512, help="image size of the folder run (default: 512)")
    p.add_argument(
        "--contents", type=int, help="contents in the folder run; 0 skips it (default: 64 on a GPU, 16 on a CPU)"
    )
    p.add_argument("--styles", type=int, default=4, help="styles in the folder run (default: 4)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each pair; the median counts (default: 3)")
    p.add_argument("--train-steps", type=int, default=3, help="timed training iterations; 0 skips them (default: 3)")
    p.add_argument(
        "--refine", type=int, default=10, help="time one 512 pair with --refine N too; 0 skips it (default: 10)"
    )
    p.add_argument("--ablation", action="store_true", help="CPU: also time our pairs with NNPACK turned off")
    p.add_argument("--big", type=int, default=4096, help="side of the very large image; 0 skips it (default: 4096)")
    p.add_argument(
        "--seams",
        type=int,
        default=2048,
        help="side of an image stylized in tiles and in one pass, to compare "
        "(one pass needs ~4x the memory of tiles); 0 skips it (default: 2048)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=3,
        help="runs of 4 photos x 2 paintings at 512 px as whole processes (the reference's test.py and our "
        "command), the median counting; 0 skips them (default: 3)",
    )
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    main()
