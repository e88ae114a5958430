"""Training data: random crops from folders of images, reproducible by sample number.

Sample k of a run is a pure function of (seed, k): which file (a fresh permutation per
pass over the folder) and where to crop. Resuming at step s just starts the sampler at
k = s * batch_size, so a resumed run sees exactly the data an unbroken run would; under
torchrun each process takes its own slice of every step's samples.
"""

from __future__ import annotations

import signal
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from stylize.images import IMAGE_EXTS, ImageError, list_images, load_image, resize_short


def permutation(seed: int, epoch: int, n: int) -> list[int]:
    """The order of `n` items in pass `epoch` over them: a fresh permutation for every pass."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class CropDataset(Dataset):
    def __init__(self, root: str | Path, image_size: int, crop_size: int, seed: int) -> None:
        self.root, self.files = root, list_images(root, recursive=True)
        if not self.files:
            raise FileNotFoundError(
                f"{root}: no images found (looked for {', '.join(sorted(IMAGE_EXTS))}, recursively)"
            )
        self.image_size, self.crop_size, self.seed = image_size, crop_size, seed
        self.bad: set[Path] = set()
        self._epoch, self._perm = -1, []

    def __len__(self) -> int:
        return len(self.files)

    def _file(self, k: int) -> Path:
        if self._epoch != k // len(self.files):
            self._epoch = k // len(self.files)
            self._perm = permutation(self.seed, self._epoch, len(self.files))
        return self.files[self._perm[k % len(self.files)]]

    def __getitem__(self, k: int) -> torch.Tensor:
        # A file that fails to load is skipped (with one warning) for the next in the order.
        for j in range(len(self.files)):
            path = self._file(k + j)
            if path in self.bad:
                continue
            try:
                img = load_image(path)
            except ImageError as e:
                self.bad.add(path)
                warnings.warn(f"skipping {e}", stacklevel=1)
                continue
            return self._crop(resize_short(img, self.image_size), k)
        raise FileNotFoundError(f"{self.root}: none of the {len(self.files)} images can be read")

    def _crop(self, img: torch.Tensor, k: int) -> torch.Tensor:
        # v2.RandomCrop draws from the global RNG; the position comes from a generator seeded by
        # (seed, k) instead, so sample k is the same in every run, process and resume.
        g = torch.Generator().manual_seed((self.seed << 40) + k)
        h, w = img.shape[1:]
        size = self.crop_size
        top = int(torch.randint(0, h - size + 1, (1,), generator=g))
        left = int(torch.randint(0, w - size + 1, (1,), generator=g))
        return img[:, top : top + size, left : left + size]


class CountingSampler(Sampler[int]):
    """The sample numbers of an endless run from `start_step`, for process `rank` of `world_size`.

    Step s uses samples s * B ... s * B + B - 1, B the global batch. Process r takes its slice
    of b = B / world_size of them, so the processes of one step see together exactly the batch
    a single process would, and a run can resume with a different number of processes.
    """

    def __init__(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.start_step, self.batch_size = start_step, batch_size
        self.per_rank = batch_size // world_size
        self.offset = rank * self.per_rank

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = step * self.batch_size + self.offset
            yield from range(first, first + self.per_rank)
            step += 1


def _leave_stops_to_the_main_process(worker_id: int) -> None:
    """A loader worker ignores Ctrl-C and SIGTERM: they reach it too (Ctrl-C signals the terminal's
    whole process group, schedulers and `pkill -f` every process of the job), and a worker killed
    mid-step would make the main process fail with a traceback instead of checkpointing and
    stopping. The main process shuts the workers down when it stops; they also exit when it dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def endless_batches(
    dataset: CropDataset, batch_size: int, start_step: int, num_workers: int, rank: int = 0, world_size: int = 1
) -> Iterator[torch.Tensor]:
    """This process's share of each step's batch of `batch_size` (the global batch)."""
    sampler = CountingSampler(start_step, batch_size, rank, world_size)
    loader = DataLoader(
        dataset,
        batch_size=sampler.per_rank,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        worker_init_fn=_leave_stops_to_the_main_process,
    )
    return iter(loader)
