"""Train an AdaIN decoder: `stylize-adain-train --config configs/adain.yaml [--set key=value ...]`.

A run lives in `out_dir`: checkpoint.pt (and checkpoint_prev.pt) to resume from, log.csv with
the losses, samples/step_NNNNNN.png grids of fixed content | style | output rows, and
decoder.pth, the decoder alone (its moving average when `ema_decay` is set), written at every
checkpoint. Rerunning the same command resumes from the last checkpoint.

Under torchrun (`torchrun --nproc-per-node N train.py --config ...`) every process trains a
DistributedDataParallel copy of the decoder on its own slice of each step's batch; `batch_size`
is the global batch, so the run follows the same steps as one process would. Rank 0 alone
reads and writes the run's files.

The file reads top to bottom: the command, the run (setup, then the loop), one step, its data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from stylize import __version__
from stylize.distributed import Dist, broadcast, device_for, from_env, mean, process_group
from stylize.models import Decoder, Encoder
from stylize.options import DEFAULT_DECODER, WEIGHTS_DIR
from stylize.training import cache, losses
from stylize.training.config import ConfigError, TrainConfig, load_config
from stylize.training.data import CropDataset, endless_batches
from stylize.training.losses import TERMS, Batch, half_scale, tap_stats
from stylize.training.run import CheckpointError, Ema, Run, StopSignals, sample_pairs, save_samples
from stylize.weights import WeightsError, load_decoder, load_encoder, skip_taps_of


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="stylize-adain-train",
        description="Train an AdaIN decoder on a folder of content images (photos) and one of style images "
        "(paintings). Rerunning the same command resumes from the run's last checkpoint.",
        epilog="example: stylize-adain-train --config configs/adain.yaml --set batch_size=16 --set out_dir=runs/b16",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--config", type=Path, help="YAML config (configs/; every key: docs/training.md)")
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
        out = train(load_config(args.config, overrides))
    except (ConfigError, WeightsError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"decoder: {out}")


def shipped_decoder_overrides() -> list[str]:
    """Config overrides that continue training the shipped decoder from where it stopped."""
    entry = json.loads((WEIGHTS_DIR / "MANIFEST.json").read_text()).get(DEFAULT_DECODER.name, {})
    if "steps" not in entry:
        raise ConfigError(f"{WEIGHTS_DIR / 'MANIFEST.json'}: no step count recorded for {DEFAULT_DECODER.name}")
    steps, images = entry["steps"], entry.get("images_seen", 0)
    return [f"init_decoder={DEFAULT_DECODER}", f"init_step={steps}", f"init_images={images}"]


def train(cfg: TrainConfig) -> Path:
    """Train, resuming from `cfg.out_dir`'s checkpoint if there is one; under torchrun, as one rank."""
    d = from_env()
    if cfg.batch_size % d.world_size:
        raise ConfigError(
            f"config key 'batch_size': {cfg.batch_size} is the global batch and must be divisible "
            f"by the {d.world_size} processes"
        )
    device = device_for(cfg.device, d)
    with process_group("nccl" if device.type == "cuda" else "gloo") as d:
        return _train(cfg, d, device)


def _train(cfg: TrainConfig, d: Dist, device: torch.device) -> Path:
    # setup: the frozen encoder, the decoder (fresh, from init_decoder, or from the run's checkpoint)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    # channels_last: bf16 convolutions on CUDA run fastest in it, and on a 2-core CPU training
    # measured ~20% faster (oneDNN's NHWC kernels)
    encoder = load_encoder(cfg.encoder).to(device, memory_format=torch.channels_last)
    taps = tuple(cfg.skip_taps)
    decoder = load_decoder(cfg.init_decoder, taps) if cfg.init_decoder else Decoder(taps)
    decoder = decoder.to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(param_groups(decoder, cfg.skip_lr_scale), lr=cfg.lr)
    run = Run(cfg) if d.is_main else None  # only rank 0 touches the run's files
    start = cfg.init_step if cfg.init_decoder else 0  # a decoder trained that far already
    seen = cfg.init_images if cfg.init_decoder else 0
    if (ckpt := broadcast(run.load() if run else None, d)) is not None:
        start, seen = resume(ckpt, cfg, decoder, opt)
        if run:
            run.trim_log(start)
            tqdm.write(f"resuming {run.dir} at step {start}")
    ema = Ema(decoder, cfg.ema_decay, ckpt.get("ema") if ckpt else None) if run and cfg.ema_decay else None
    final = Path(cfg.out_dir) / "decoder.pth"
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
            tqdm.write(
                f"{d.world_size} processes x batch {cfg.batch_size // d.world_size} = global batch {cfg.batch_size}"
            )

    # the loop: a step, then the log, the sample grid and the checkpoint when they are due
    data = batches(cfg, encoder, device, start, d)
    pairs = sample_pairs(cfg) if run else None
    stop = StopSignals()
    done = saved = start
    bar = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True, disable=not run)
    t0 = time.time()
    try:
        for step in range(start, cfg.steps):
            stage = "reconstruct" if step < cfg.recon_steps else "adain"
            lr = learning_rate(cfg, step)
            terms = train_step(encoder, model, opt, next(data), cfg, lr, stage == "reconstruct")
            done, seen = step + 1, seen + cfg.batch_size
            if ema:
                ema.update(decoder, step)
            bar.update(1)
            if done % cfg.log_every == 0 or done == cfg.steps:
                # every rank takes part in the average; rank 0 writes it
                values = mean(torch.stack(list(terms.values())).detach().float(), d).tolist()
                row = {"step": done, "images": seen, "stage": stage, "lr": lr, **dict(zip(terms, values))}
                if run:
                    run.log(row | {"seconds": round(time.time() - t0, 1)})
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


def resume(ckpt: dict, cfg: TrainConfig, decoder: Decoder, opt: torch.optim.Optimizer) -> tuple[int, int]:
    """Load a checkpoint into the decoder, the optimiser and the RNG; (its step, images seen)."""
    if set(own := skip_taps_of(ckpt["decoder"])) != set(decoder.skip_taps):
        raise CheckpointError(
            f"{cfg.out_dir}: its checkpoint's decoder has skips from {', '.join(own) or 'no tap'}, the config "
            f"asks for {', '.join(decoder.skip_taps) or 'none'}: set skip_taps to match, or start another "
            "out_dir with init_decoder pointing at this checkpoint"
        )
    decoder.load_state_dict(ckpt["decoder"])
    opt.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"])
    if ckpt["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    return ckpt["step"], ckpt.get("images_seen", ckpt["step"] * cfg.batch_size)


def param_groups(decoder: Decoder, skip_lr_scale: float) -> list[dict]:
    """The optimiser's groups: the decoder, and its skips (if any) at `skip_lr_scale` times the lr."""
    named = dict(decoder.named_parameters())
    skips = [p for name, p in named.items() if name.startswith("skips.")]
    rest = [p for name, p in named.items() if not name.startswith("skips.")]
    return [{"params": rest}] + ([{"params": skips, "lr_scale": skip_lr_scale}] if skips else [])


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The reference's lr / (1 + lr_decay * step), times a linear fall to 0 in a cooldown."""
    lr = cfg.lr / (1 + cfg.lr_decay * step)
    if 0 <= cfg.cooldown_start <= step:
        lr *= max(0.0, 1 - (step - cfg.cooldown_start) / cfg.cooldown_steps)
    return lr


def loss_weights(cfg: TrainConfig) -> dict[str, float]:
    """Each of `losses.TERMS`' weight in the loss the step follows."""
    return {
        "content": 1.0,
        "style": cfg.style_weight,
        "style_half": cfg.style_weight * cfg.style_half_weight,
        "identity": cfg.identity_weight,
        "laplacian": cfg.laplacian_weight,
        "ssim": cfg.ssim_weight,
    }


def train_step(
    encoder: Encoder,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch | Images,
    cfg: TrainConfig,
    lr: float,
    reconstruct: bool = False,
) -> dict[str, torch.Tensor]:
    """One optimiser step on a batch of pairs; {"loss": the weighted sum, each term of `losses.TERMS`}.
    With `reconstruct` the decoder learns to give the content images back from their features
    (the style images are not used)."""
    device = next(model.parameters()).device
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    skip_taps = getattr(model, "module", model).skip_taps  # under DDP, the decoder is its .module
    weights = loss_weights(cfg)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        b = encode(encoder, batch, skip_taps, device, not reconstruct, weights["style_half"] > 0 and not reconstruct)
        terms = losses.reconstruction_terms(model, b) if reconstruct else losses.terms(encoder, model, b, weights)
    loss = terms["content"] if reconstruct else sum(weights[k] * terms[k] for k in TERMS)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # under DDP this also averages the gradients over the processes
    opt.step()
    return {"loss": loss, **terms}


class Images(NamedTuple):
    """A step's crops read from disk, to encode: content images and style images."""

    content: torch.Tensor
    style: torch.Tensor


@torch.no_grad()
def encode(
    encoder: Encoder,
    batch: Batch | Images,
    skip_taps: tuple[str, ...],
    device: torch.device,
    styles: bool = True,
    half: bool = False,
) -> Batch:
    """A step's batch on `device`, encoded: crops read from disk go through the encoder (each content
    image once, for relu4_1 and the skip taps on its way; the style images unless `styles` is false;
    also at half scale with `half`); a batch from the cache is encoded already."""

    def put(x: torch.Tensor) -> torch.Tensor:  # images and features in channels_last, statistics as they are
        return x.to(
            device, non_blocking=True, memory_format=torch.channels_last if x.dim() == 4 else torch.preserve_format
        )

    if isinstance(batch, Batch):
        return Batch(put(batch.content), put(batch.feats), {t: put(x) for t, x in batch.taps.items()}, put(batch.stats))
    content, style = put(batch.content), put(batch.style)
    taps = encoder(content)
    stats = tap_stats(encoder(style)) if styles else None
    return Batch(
        content,
        taps["relu4_1"],
        {t: taps[t] for t in skip_taps},
        stats,
        tap_stats(encoder(half_scale(style))) if half else None,
    )


def batches(cfg: TrainConfig, encoder: Encoder, device: torch.device, start: int, d: Dist) -> Iterator[Batch | Images]:
    """This process's share of every step's batch from `start` on: from the cache of encoded crops
    when `cache_dir` is set (rank 0 builds it first if needed), else crops read each step."""
    if cfg.cache_dir:
        if d.is_main:
            cache.build(cfg, encoder, device)
        broadcast(None, d)  # the other ranks wait for the cache
        return cache.CachedBatches(cfg.cache_dir, cfg.seed, tuple(cfg.skip_taps)).batches(
            cfg.batch_size, start, d.rank, d.world_size
        )

    def read(folder: str, size: int, seed: int) -> Iterator[torch.Tensor]:
        crops = CropDataset(folder, size, cfg.crop_size, seed)
        return endless_batches(crops, cfg.batch_size, start, cfg.num_workers, d.rank, d.world_size)

    pairs = zip(read(cfg.content_dir, cfg.image_size, cfg.seed), read(cfg.style_dir, cfg.style_size, cfg.seed + 1))
    return (Images(content, style) for content, style in pairs)


if __name__ == "__main__":
    main()
