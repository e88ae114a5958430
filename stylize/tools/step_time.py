"""Seconds per training step of a config on its own batches (from its cache when it has one, built
first if needed), with the shipped decoder: each variant (a set of config overrides) trains its own
copy, the variants taking turns step by step so that all see the machine as it was; the median of
--steps steps each after one warm-up. For BENCHMARKS.md; stop other work first.

    python -m stylize.tools.step_time --config configs/cpu_256.yaml \
        --variant laplacian_weight=0 --variant laplacian_weight=100
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from stylize.distributed import Dist
from stylize.options import DEFAULT_DECODER
from stylize.training import loop as T
from stylize.training.config import load_config
from stylize.weights import load_decoder, load_encoder


def trainer(config: str, overrides: list[str]) -> Callable[[], float]:
    """A variant's step: trains its own copy of the shipped decoder on its config's next batch and
    returns the seconds `train_step` took (fetching the batch is not counted)."""
    cfg = load_config(config, overrides)
    device = torch.device("cpu") if cfg.device in ("auto", "cpu") else torch.device(cfg.device)
    encoder = load_encoder(cfg.encoder).to(device, memory_format=torch.channels_last)
    decoder = load_decoder(DEFAULT_DECODER, tuple(cfg.skip_taps)).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(T.param_groups(decoder, cfg.skip_lr_scale), lr=cfg.lr)
    data = T.batches(cfg, encoder, device, 0, Dist())

    def step() -> float:
        batch = next(data)
        t0 = time.perf_counter()
        T.train_step(encoder, decoder, opt, batch, cfg, 1e-7)  # a tiny lr: the decoder stays as shipped
        return time.perf_counter() - t0

    return step


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m stylize.tools.step_time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="configs/cpu_256.yaml")
    p.add_argument("--set", action="append", default=[], help="an override for every variant (key=value)")
    p.add_argument("--variant", action="append", default=[], help="overrides of one variant, comma-separated")
    p.add_argument("--steps", type=int, default=12, help="timed steps per variant (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    variants = {v or "as configured": trainer(args.config, args.set + v.split(",") if v else args.set)
                for v in args.variant or [""]}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.steps + 1):
        for name, step in variants.items():
            seconds = step()
            if i:  # the first is a warm-up
                times[name].append(seconds)
    for name, t in times.items():
        q = statistics.quantiles(t, n=4)
        print(f"{name}: {statistics.median(t):.3f} s a step (quartiles {q[0]:.3f}, {q[2]:.3f}; {len(t)} steps)")


if __name__ == "__main__":
    main()
