"""The process's memory as glibc's malloc keeps it: reused between tensors while stylizing an image
that fits one tile, malloc's own way for larger ones, and handed back to the system after a large
piece of work. Elsewhere than glibc these do nothing."""

from __future__ import annotations

import contextlib
import ctypes

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters (malloc.h)
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536  # glibc's defaults
_keeping = False


def keep_freed_memory(keep: bool = True) -> None:
    """With `keep`, have malloc keep the memory of freed tensors for the next ones rather than hand
    each large block back to the system: every layer's output is a new tensor of tens of MB, and a
    block fresh from the system costs its page faults (at 512 px a new 64 MB tensor took 23 ms to
    fill, a reused one 2 ms): a 512 px pair's encoding and decoding ran a quarter faster on a 2-core
    CPU. Without, malloc's defaults again, and what was kept goes back: an image done in tiles holds
    whole-image tensors between the tiles' temporaries, and reusing blocks left holes that raised
    a 4096 px image's peak from 5.1 to 7.0 GB."""
    global _keeping
    if keep == _keeping:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_MAX, 0 if keep else DEFAULT_MMAP_MAX)  # large blocks from the heap, to reuse
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1 if keep else DEFAULT_TRIM_THRESHOLD)  # nor trimmed at each free
        _keeping = keep
    if not keep:
        release_memory()


def release_memory() -> None:
    """Hand the memory freed so far back to the system (after a 100 MP photo the web server held
    about 1.9 GB otherwise). Under a millisecond; tensors are freed as their last reference goes,
    so no garbage collection is needed first."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
