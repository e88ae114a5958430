"""Train an AdaIN decoder: `python train.py --config configs/adain.yaml [--set key=value ...]`.

A run lives in `out_dir`: checkpoint.pt (and checkpoint_prev.pt) to resume from, log.csv
with the losses, samples/step_NNNNNN.png grids of fixed content | style | output rows,
and decoder.pth, the decoder alone (its moving average when `ema_decay` is set), written at
every checkpoint.

Under torchrun (`torchrun --nproc-per-node N train.py --config ...`) every process trains a
DistributedDataParallel copy of the decoder on its own slice of each step's batch; `batch_size`
is the global batch, so the run follows the same steps as one process would. Rank 0 alone
reads and writes the run's files.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from stylize import cache, distill
from stylize.config import ConfigError, TrainConfig, load_config, to_dict
from stylize.data import CropDataset, endless_batches
from stylize.distributed import Dist, broadcast, device_for, from_env, mean, process_group
from stylize.files import atomic_write, remove_stale_temps
from stylize.images import ImageError, center_crop, list_images, load_image, make_grid, resize_short
from stylize.losses import (
    PAPER_TAP_WEIGHTS,
    content_loss,
    laplacian_loss,
    reconstruction_loss,
    split_stats,
    ssim_loss,
    style_loss,
    tap_stats,
)
from stylize.models import SKIP_CAP, Decoder, Encoder, adain, mean_std
from stylize.weights import (
    DEFAULT_DECODER,
    WEIGHTS_DIR,
    WeightsError,
    atomic_save,
    load_decoder,
    load_encoder,
    skip_taps_of,
)


@torch.no_grad()
def encode(
    encoder: Encoder, content: torch.Tensor, style: torch.Tensor | None, skip_taps: Sequence[str] = ()
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """The photos' relu4_1 features, the paintings' tap statistics (None without paintings) and
    the photos' features at `skip_taps`, which the pass to relu4_1 computes on its way."""
    taps = encoder(content)
    stats = None if style is None else tap_stats(encoder(style))
    return taps["relu4_1"], stats, {t: taps[t] for t in skip_taps}


def losses(
    encoder: Encoder,
    decoder: torch.nn.Module,
    content: torch.Tensor,
    feats: torch.Tensor,
    stats: torch.Tensor | None,
    identity: int = 0,
    layer_weights: Sequence[float] = PAPER_TAP_WEIGHTS,
    laplacian: bool = False,
    ssim: bool = False,
    photo_taps: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(content loss, style loss, identity loss, Laplacian loss, SSIM loss) of decoding the AdaIN
    target of a batch of pairs, from the photos' relu4_1 `feats` and the paintings' `stats`. The
    identity loss is the L1 distance to the first `identity` photos of their own features decoded
    (alpha 0), in the same decoder call; `layer_weights` weigh the style taps; the Laplacian loss
    (0 unless `laplacian`) compares the painted photos' edges with theirs, the SSIM loss (0 unless
    `ssim`) their luminance structure. Without `stats`, (reconstruction loss of all the photos, 0,
    0, 0, 0). A decoder with skips also gets the photos' shallow taps (`photo_taps`, from a cache, or
    encoded here), AdaIN'd like relu4_1 (as they are for the identity and the reconstruction)."""
    zero = torch.zeros((), device=feats.device)
    skip_taps = getattr(decoder, "module", decoder).skip_taps  # under DDP, the decoder is its .module
    photo = photo_taps or {}
    if skip_taps and not photo_taps:
        with torch.no_grad():  # up to the deepest skip tap ("relu3_1" > "relu2_1"), not beyond
            photo = encoder(content, last=max(skip_taps))
    if stats is None:
        return reconstruction_loss(decoder(feats, photo), content), zero, zero, zero, zero
    style = split_stats(stats)
    target = adain(feats, *style["relu4_1"])
    shallow = {t: torch.cat([adain(photo[t], *style[t]), photo[t][:identity]]) for t in skip_taps}
    out = decoder(torch.cat([target, feats[:identity]]), shallow)
    out, own = out[: len(target)], out[len(target) :]
    out_taps = encoder(out)
    li = reconstruction_loss(own, content[:identity]) if identity else zero
    lp = laplacian_loss(out, content) if laplacian else zero
    lx = ssim_loss(out, content) if ssim else zero
    return content_loss(out_taps["relu4_1"], target), style_loss(out_taps, stats, layer_weights), li, lp, lx


def param_groups(decoder: Decoder, skip_lr_scale: float) -> list[dict]:
    """The optimiser's groups: the decoder, and its skips (if any) at `skip_lr_scale` times the lr."""
    named = dict(decoder.named_parameters())
    skips = [p for name, p in named.items() if name.startswith("skips.")]
    rest = [p for name, p in named.items() if not name.startswith("skips.")]
    return [{"params": rest}] + ([{"params": skips, "lr_scale": skip_lr_scale}] if skips else [])


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last: bf16 convolutions on CUDA run fastest in it, and on a 2-core CPU training
    measured ~20% faster (oneDNN's NHWC kernels)."""
    return torch.channels_last


def to_device(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """Images and features in the training memory format; statistics (2-d) as they are."""
    if x is None:
        return None
    fmt = memory_format(device) if x.dim() == 4 else torch.preserve_format
    return x.to(device, non_blocking=True, memory_format=fmt)


def stage(cfg: TrainConfig, step: int) -> str:
    """'reconstruct' for the warm start's first `recon_steps` steps, then 'adain'."""
    return "reconstruct" if step < cfg.recon_steps else "adain"


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The reference's lr / (1 + lr_decay * step), times a linear fall to 0 in a cooldown."""
    lr = cfg.lr / (1 + cfg.lr_decay * step)
    if 0 <= cfg.cooldown_start <= step:
        lr *= max(0.0, 1 - (step - cfg.cooldown_start) / cfg.cooldown_steps)
    return lr


def train_step(
    encoder: Encoder,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    cfg: TrainConfig,
    lr: float,
    reconstruct: bool = False,
    refined: tuple[torch.Tensor, ...] | None = None,
) -> tuple[torch.Tensor, ...]:
    """One optimiser step on a batch of pairs; (loss, content, style, identity, Laplacian, SSIM and
    distill losses). With `reconstruct` the decoder learns to give the photos back from their
    features (the styles are not used); `refined` is a batch of `distill.DistillBatches` for the
    distill term."""
    device = next(model.parameters()).device
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    content, feats, stats, style = (to_device(x, device) for x in batch[:4])
    taps = batch.photo_taps
    photo_taps = {t: to_device(x, device) for t, x in taps.items()} if taps else None
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        if feats is None:  # photos read from disk (their paintings too, unless their stats are cached)
            skip_taps = getattr(model, "module", model).skip_taps  # under DDP, the decoder is its .module
            feats, encoded, photo_taps = encode(encoder, content, None if reconstruct else style, skip_taps)
            stats = encoded if stats is None else stats
        identity = min(cfg.identity_images, len(content)) if cfg.identity_weight else 0
        lc, ls, li, lp, lx = losses(
            encoder,
            model,
            content,
            feats,
            None if reconstruct else stats,
            identity,
            cfg.style_layer_weights,
            cfg.laplacian_weight > 0,
            cfg.ssim_weight > 0,
            photo_taps,
        )
        ld = torch.zeros((), device=device)
        if refined is not None and not reconstruct:
            ld = distill.distill_loss(encoder, model, *(to_device(x, device) for x in refined))
    photo_terms = cfg.identity_weight * li + cfg.laplacian_weight * lp + cfg.ssim_weight * lx
    weighted = cfg.content_weight * lc + cfg.style_weight * ls + photo_terms + cfg.distill_weight * ld
    loss = lc if reconstruct else weighted
    opt.zero_grad(set_to_none=True)
    loss.backward()  # under DDP this also averages the gradients over the processes
    opt.step()
    return loss, lc, ls, li, lp, lx, ld


class Batch(NamedTuple):
    """A step's data: photos and paintings (crops), or, from a cache, the photos with their
    relu4_1 features (and, with `cache_skips`, their skip taps') and the paintings' tap statistics."""

    content: torch.Tensor
    feats: torch.Tensor | None = None
    stats: torch.Tensor | None = None
    style: torch.Tensor | None = None
    photo_taps: dict[str, torch.Tensor] | None = None


class Ema:
    """An exponential moving average of a decoder's weights: `decay` per step, less in a run's
    first steps ((1 + step) / (10 + step), as TensorFlow's ExponentialMovingAverage does), so
    that a short run from random weights is not averaged with them."""

    def __init__(self, decoder: Decoder, decay: float, state: dict[str, torch.Tensor] | None = None) -> None:
        self.decay = decay
        self.model = copy.deepcopy(decoder).requires_grad_(False)
        if state is not None:  # resuming; a checkpoint from before the average starts it afresh
            self.model.load_state_dict(state)

    @torch.no_grad()
    def update(self, decoder: Decoder, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for avg, now in zip(self.model.state_dict().values(), decoder.state_dict().values(), strict=True):
            avg.lerp_(now, 1 - decay)


CHECKPOINT_KEYS = {"decoder", "optimizer", "step", "rng", "cuda_rng"}


class CheckpointError(Exception):
    """A run folder whose checkpoints are all damaged."""


class Run:
    """A training run's files: checkpoints, log and sample grids under `cfg.out_dir`."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.dir = Path(cfg.out_dir)
        self.ckpt, self.prev = self.dir / "checkpoint.pt", self.dir / "checkpoint_prev.pt"
        (self.dir / "samples").mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.dir)  # half-written checkpoints of a run killed with SIGKILL

    def save(
        self,
        decoder: Decoder,
        opt: torch.optim.Optimizer,
        step: int,
        cfg: TrainConfig,
        world_size: int = 1,
        images_seen: int = 0,
        ema: Ema | None = None,
    ) -> None:
        state = {
            "decoder": decoder.state_dict(),
            **({"ema": ema.model.state_dict()} if ema else {}),
            "optimizer": opt.state_dict(),
            "step": step,
            "images_seen": images_seen,  # by this decoder since its random start, in all its runs
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "config": to_dict(cfg),
            "world_size": world_size,  # for the record: resuming with another number of processes is fine
        }
        if self.ckpt.exists():  # keep one older checkpoint in case the new one is damaged
            with atomic_write(self.prev) as f:  # a copy: checkpoint.pt stays in place until replaced
                f.write(self.ckpt.read_bytes())
        atomic_save(state, self.ckpt)
        atomic_save((ema.model if ema else decoder).state_dict(), self.dir / "decoder.pth")

    def load(self) -> dict | None:
        """The newest readable checkpoint, or None for a fresh run (no checkpoint at all)."""
        found = [path for path in (self.ckpt, self.prev) if path.exists()]
        for path in found:
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                tqdm.write(f"warning: {path} is unreadable ({type(e).__name__}); trying an older checkpoint")
                continue
            if isinstance(ckpt, dict) and CHECKPOINT_KEYS <= set(ckpt):
                return ckpt
            tqdm.write(f"warning: {path} is not a training checkpoint; trying an older checkpoint")
        if found:  # starting afresh would overwrite them: let a person decide
            raise CheckpointError(
                f"{self.dir}: no usable checkpoint ({', '.join(p.name for p in found)} damaged); "
                "move them away to start this run afresh"
            )
        return None

    def trim_log(self, step: int) -> None:
        """Drop log rows after `step`, and a half-written last row: after a kill, the steps
        past the last checkpoint are done again and logged again."""
        path = self.dir / "log.csv"
        if not path.exists():
            return
        header, *rows = path.read_text().splitlines(keepends=True) or [""]
        keep = [r for r in rows if r.endswith("\n") and r.split(",")[0].isdigit() and int(r.split(",")[0]) <= step]
        if keep != rows:
            with atomic_write(path) as f:
                f.write("".join([header, *keep]).encode())

    def log(self, row: dict[str, float]) -> None:
        path = self.dir / "log.csv"
        fields = list(row)
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != fields:  # a run begun by an older train.py: new columns
                    self._rewrite_log(path, fields, list(reader))
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerow(row)

    @staticmethod
    def _rewrite_log(path: Path, fields: list[str], rows: list[dict]) -> None:
        """The log under a new header; columns it did not have are left empty in its old rows."""
        with atomic_write(path) as f:
            text = io.StringIO()
            w = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore", restval="")
            w.writeheader()
            w.writerows(rows)
            f.write(text.getvalue().encode())


class StopSignals:
    """Turn SIGINT (Ctrl-C) and SIGTERM (a scheduler stopping the job) into a request that the
    training loop honours between steps, so a signal never cuts a checkpoint in half. A second
    signal has its usual effect at once."""

    def __init__(self) -> None:
        self.signal = 0
        self._old: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():  # only it can catch signals
            self._old = {s: signal.signal(s, self._request) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _request(self, signum: int, frame: object) -> None:
        self.signal = signum
        tqdm.write(f"{signal.Signals(signum).name}: stopping after this step (again to stop at once)")
        self.restore()


def sample_pairs(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, evenly spaced content and style images for the sample grids."""

    def pick(folder: str) -> torch.Tensor:
        files = list_images(folder, recursive=True)
        imgs = []
        spread = files[:: max(1, len(files) // cfg.sample_pairs)]
        for f in dict.fromkeys(spread + files):  # evenly spaced, then any readable ones
            with contextlib.suppress(ImageError):  # the data loader warns about these
                imgs.append(center_crop(resize_short(load_image(f), cfg.sample_size), cfg.sample_size))
            if len(imgs) == cfg.sample_pairs:
                break
        if not imgs:
            raise FileNotFoundError(f"{folder}: none of the {len(files)} images can be read")
        return torch.stack(imgs)

    return pick(cfg.content_dir), pick(cfg.style_dir)


@torch.no_grad()
def save_samples(encoder: Encoder, decoder: Decoder, pairs: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    content, style = (t.to(next(decoder.parameters()).device) for t in pairs)
    decoder.eval()
    c, s = encoder(content), encoder(style)
    shallow = {t: adain(c[t], *mean_std(s[t]), cap=SKIP_CAP) for t in decoder.skip_taps}  # as the Stylizer paints
    out = decoder(adain(c["relu4_1"], *mean_std(s["relu4_1"])), shallow).float()
    decoder.train()
    make_grid([[c, s, o] for c, s, o in zip(content, style, out)], content.shape[-1]).save(path)


def batches(cfg: TrainConfig, encoder: Encoder, device: torch.device, start: int, d: Dist) -> Iterator[Batch]:
    """This process's share of every step's batch from `start` on: from the cache of encoded
    crops when `cache_dir` is set (rank 0 builds it first if needed), else crops read each step;
    with `cache_photos` false, the photos read each step and the paintings' stats from the cache."""

    def read(folder: str, size: int, crop: int, seed: int) -> Iterator[torch.Tensor]:
        crops = CropDataset(folder, size, crop, seed)
        return endless_batches(crops, cfg.batch_size, start, cfg.num_workers, d.rank, d.world_size)

    reads_photos = not (cfg.cache_dir and cfg.cache_photos)
    photos = read(cfg.content_dir, cfg.image_size, cfg.crop_size, cfg.seed) if reads_photos else None
    if not cfg.cache_dir:
        paintings = read(cfg.style_dir, cfg.painting_size, cfg.painting_crop, cfg.seed + 1)
        return (Batch(content, style=style) for content, style in zip(photos, paintings))
    if d.is_main:
        cache.build(cfg, encoder, device)
    broadcast(None, d)  # the other ranks wait for the cache
    cached = cache.CachedBatches(cfg.cache_dir, cfg.seed, cache.cached_taps(cfg), photos=cfg.cache_photos)
    if photos is not None:
        stats = cached.paintings(cfg.batch_size, start, d.rank, d.world_size)
        return (Batch(content, stats=s) for content, s in zip(photos, stats))
    stream = cached.batches(cfg.batch_size, start, d.rank, d.world_size)
    return (Batch(content, feats, stats, photo_taps=taps or None) for content, feats, stats, taps in stream)


def train(cfg: TrainConfig) -> Path:
    """Train, resuming from `cfg.out_dir`'s checkpoint if there is one; under torchrun, as one rank."""
    d = from_env()
    if cfg.distill_weight and d.enabled:  # its second decoder call in a step is not DDP's
        raise ConfigError("config key 'distill_weight': the distill term trains in one process only")
    if cfg.batch_size % d.world_size:
        raise ConfigError(
            f"config key 'batch_size': {cfg.batch_size} is the global batch and must be divisible "
            f"by the {d.world_size} processes"
        )
    device = device_for(cfg.device, d)
    with process_group("nccl" if device.type == "cuda" else "gloo") as d:
        return _train(cfg, d, device)


def _train(cfg: TrainConfig, d: Dist, device: torch.device) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    encoder = load_encoder(cfg.encoder).to(device, memory_format=memory_format(device))
    taps = tuple(cfg.skip_taps)
    decoder = (load_decoder(cfg.init_decoder, taps) if cfg.init_decoder else Decoder(taps)).to(
        device, memory_format=memory_format(device)
    )
    opt = torch.optim.Adam(param_groups(decoder, cfg.skip_lr_scale), lr=cfg.lr)
    run = Run(cfg) if d.is_main else None  # only rank 0 touches the run's files
    final = Path(cfg.out_dir) / "decoder.pth"
    start = cfg.init_step if cfg.init_decoder else 0  # a decoder trained that far already
    seen = cfg.init_images if cfg.init_decoder else 0
    if (ckpt := broadcast(run.load() if run else None, d)) is not None:
        if set(own := skip_taps_of(ckpt["decoder"])) != set(decoder.skip_taps):
            raise CheckpointError(
                f"{cfg.out_dir}: its checkpoint's decoder has skips from {', '.join(own) or 'no tap'}, the config "
                f"asks for {', '.join(decoder.skip_taps) or 'none'}: set skip_taps to match, or start another "
                "out_dir with init_decoder pointing at this checkpoint"
            )
        decoder.load_state_dict(ckpt["decoder"])
        opt.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        seen = ckpt.get("images_seen", start * cfg.batch_size)
        torch.set_rng_state(ckpt["rng"])
        if ckpt["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        if run:
            run.trim_log(start)
            tqdm.write(f"resuming {run.dir} at step {start}")
    ema = Ema(decoder, cfg.ema_decay, ckpt.get("ema") if ckpt else None) if run and cfg.ema_decay else None
    if start >= cfg.steps:
        if run:
            tqdm.write(f"{run.dir}: already trained {start} of {cfg.steps} steps")
        return final
    model: torch.nn.Module = decoder
    if d.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            decoder, device_ids=[device] if device.type == "cuda" else None
        )
        if run:
            b = cfg.batch_size // d.world_size
            tqdm.write(f"{d.world_size} processes x batch {b} = global batch {cfg.batch_size}")

    data = batches(cfg, encoder, device, start, d)
    refined = None
    if cfg.distill_weight:  # after `batches`, which builds the cache the refined pairs index
        refined = distill.DistillBatches(cfg.distill_dir, cfg.cache_dir, cfg.seed).batches(cfg.distill_images, start)
    pairs = sample_pairs(cfg) if run else None
    stop = StopSignals()
    done = saved = start
    bar = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True, disable=not run)
    t0 = time.time()
    try:
        for step in range(start, cfg.steps):
            lr = learning_rate(cfg, step)
            now = stage(cfg, step)
            refined_batch = next(refined) if refined else None
            loss, lc, ls, li, lp, lx, ld = train_step(
                encoder, model, opt, next(data), cfg, lr, now == "reconstruct", refined_batch
            )
            done, seen = step + 1, seen + cfg.batch_size
            if ema:
                ema.update(decoder, step)
            bar.update(1)
            if done % cfg.log_every == 0 or done == cfg.steps:
                # every rank takes part in the average; rank 0 writes it
                terms = torch.stack([loss, lc, ls, li, lp, lx, ld]).detach().float()
                loss_, lc_, ls_, li_, lp_, lx_, ld_ = mean(terms, d).tolist()
                row = {
                    "step": done,
                    "images": seen,
                    "stage": now,
                    "lr": lr,
                    "loss": loss_,
                    "content": lc_,
                    "style": ls_,
                    "identity": li_,
                    "laplacian": lp_,
                    "ssim": lx_,
                    "distill": ld_,
                    "seconds": round(time.time() - t0, 1),
                }
                if run:
                    run.log(row)
                bar.set_postfix(content=f"{row['content']:.3f}", style=f"{row['style']:.3f}")
            if run and (done % cfg.sample_every == 0 or done == cfg.steps):
                save_samples(
                    encoder, ema.model if ema else decoder, pairs, run.dir / "samples" / f"step_{done:06d}.png"
                )
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                if run:
                    run.save(decoder, opt, done, cfg, d.world_size, seen, ema)
                saved = done
            # between steps the model and its checkpoint are whole; under torchrun every rank
            # must stop at the same step, so the request is shared
            if mean(torch.tensor([float(stop.signal != 0)], device=device), d).item() > 0:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        if run:
            if saved != done or not run.ckpt.exists():
                run.save(decoder, opt, done, cfg, d.world_size, seen, ema)
            tqdm.write(f"interrupted: checkpoint at step {done} in {run.ckpt}; rerun the same command to resume")
        raise SystemExit(130) from None
    finally:
        stop.restore()
    bar.close()
    return final


def shipped_decoder_overrides() -> list[str]:
    """Config overrides that continue training the shipped decoder from where it stopped."""
    entry = json.loads((WEIGHTS_DIR / "MANIFEST.json").read_text()).get(DEFAULT_DECODER.name, {})
    if "steps" not in entry:
        raise ConfigError(f"{WEIGHTS_DIR / 'MANIFEST.json'}: no step count recorded for {DEFAULT_DECODER.name}")
    steps = entry["steps"]
    images = entry.get("images_seen", steps * entry.get("config", {}).get("batch_size", 0))
    return [f"init_decoder={DEFAULT_DECODER}", f"init_step={steps}", f"init_images={images}"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train an AdaIN decoder on a folder of photos and a folder of paintings. "
        "Rerunning the same command resumes from the run's last checkpoint.",
        epilog="example: python train.py --config configs/adain.yaml --set batch_size=16 --set out_dir=runs/b16",
    )
    p.add_argument("--config", type=Path, help="YAML config (see configs/adain.yaml for every key)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable); the value is parsed as YAML",
    )
    p.add_argument(
        "--from-weights",
        action="store_true",
        help="start from the decoder in weights/ at the step and images seen that weights/MANIFEST.json "
        "records (a run folder's own checkpoint, when there is one, still wins): a long run goes on "
        "from what is committed, on any machine",
    )
    args = p.parse_args(argv)
    try:
        overrides = shipped_decoder_overrides() + args.overrides if args.from_weights else args.overrides
        cfg = load_config(args.config, overrides)
        out = train(cfg)
    except (ConfigError, WeightsError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"decoder: {out}")


if __name__ == "__main__":
    main()
