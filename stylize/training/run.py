"""A training run's state and files: checkpoints (with the decoder's moving average) to resume
from, the loss log, sample grids, and the signals that stop a run between two steps."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import signal
import threading
from pathlib import Path

import torch
from tqdm import tqdm

from stylize.files import atomic_write, remove_stale_temps
from stylize.images import ImageError, center_crop, list_images, load_image, make_grid, resize_short
from stylize.models import Decoder, Encoder, mean_std, paint
from stylize.training.config import TrainConfig, to_dict
from stylize.weights import atomic_save


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
    """A grid of content | style | output rows, painted as the Stylizer paints (skip taps capped)."""
    content, style = (t.to(next(decoder.parameters()).device) for t in pairs)
    decoder.eval()
    c, s = encoder(content), encoder(style)
    taps = {t: c[t] for t in decoder.skip_taps}
    out, _ = paint(decoder, c["relu4_1"], taps, {t: mean_std(x) for t, x in s.items()})
    decoder.train()
    make_grid([[c, s, o] for c, s, o in zip(content, style, out.float())], content.shape[-1]).save(path)
