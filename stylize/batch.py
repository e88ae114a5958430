"""Batch bookkeeping for the CLI: finding inputs in messy folders, naming outputs, and the
report of what was done, skipped and failed (a summary for people, JSON for programs)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stylize.images import IMAGE_EXTS


@dataclass
class Inputs:
    """The images found under `root`, with their output names, and what was passed over."""

    root: Path
    names: dict[Path, Path]  # image -> output name: path relative to the output folder, no extension
    not_images: list[Path] = field(default_factory=list)
    unlistable: list[tuple[Path, str]] = field(default_factory=list)  # folders that could not be read

    @property
    def images(self) -> list[Path]:
        return list(self.names)


def find_inputs(path: Path, recursive: bool = False, exclude: Path | None = None) -> Inputs:
    """A file is taken as it is. A folder is searched for files with an image extension
    (`recursive`: in its subfolders too, which the output names keep); hidden files and
    folders are left out, and so is `exclude` (an output folder inside the input)."""
    if not path.is_dir():
        return Inputs(path.parent, {path: Path(path.stem)})
    images: list[Path] = []
    found = Inputs(path, {})
    skip = exclude.resolve() if exclude is not None else None

    def unlistable(e: OSError) -> None:
        found.unlistable.append((Path(e.filename), e.strerror or type(e).__name__))

    for folder, dirs, files in os.walk(path, onerror=unlistable):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if recursive and not d.startswith(".") and (here / d).resolve() != skip)
        for name in sorted(files):
            if name.startswith("."):
                continue
            file = here / name
            (images if file.suffix.lower() in IMAGE_EXTS else found.not_images).append(file)
    found.names = output_names(images, path)
    return found


def output_names(files: list[Path], root: Path) -> dict[Path, Path]:
    """Each file's path under `root` without its extension; where two files in one folder
    share a stem (a.jpg and a.png; A.jpg and a.png too, for case-insensitive disks) the
    extension is kept in the name (a_jpg, a_png)."""

    def key(f: Path) -> str:
        return f.with_suffix("").as_posix().lower()

    stems = Counter(key(f) for f in files)
    names = {}
    for f in files:
        rel = f.relative_to(root).with_suffix("")
        names[f] = rel if stems[key(f)] == 1 else rel.with_name(f"{rel.name}_{f.suffix[1:].lower()}")
    return names


@dataclass
class Report:
    """What a batch did. Exit code: 0 when nothing failed, 1 otherwise."""

    written: list[tuple[Path, Path, Path]] = field(default_factory=list)  # (content, style, output)
    existing: list[Path] = field(default_factory=list)  # outputs already there, left alone
    not_images: list[Path] = field(default_factory=list)  # inputs skipped for their extension
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)
    stopped: str = ""  # why the batch ended early (disk full, interrupted), if it did

    @classmethod
    def merge(cls, reports: list[Report]) -> Report:
        """One report from those of several processes (torchrun), in rank order. An input that
        failed on several processes (a style, or a content whose pairs were split) counts once."""
        return cls(
            written=[w for r in reports for w in r.written],
            existing=[e for r in reports for e in r.existing],
            not_images=[n for r in reports for n in r.not_images],
            failed=list(dict.fromkeys(f for r in reports for f in r.failed)),
            stopped=next((r.stopped for r in reports if r.stopped), ""),
        )

    def fail(self, path: Path, error: Exception | str) -> None:
        """Record a failure; the reason drops the path an ImageError message starts with."""
        reason = str(error).removeprefix(f"{path}: ")
        self.failed.append((path, reason))

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.stopped else 0

    def summary(self) -> str:
        skipped = len(self.existing) + len(self.not_images)
        line = f"{len(self.written)} written, {skipped} skipped, {len(self.failed)} failed"
        if self.existing:
            line += f" ({len(self.existing)} already there: kept, --overwrite redoes them)"
        return line

    def problems(self) -> str:
        """Every skipped input and every failure with its reason, one a line."""
        lines = [f"  skipped (not an image): {p}" for p in self.not_images]
        lines += [f"  failed: {p}: {reason}" for p, reason in self.failed]
        if self.stopped:
            lines.append(f"  stopped early: {self.stopped}")
        return "\n".join(lines)

    def to_json(self) -> str:
        data = {
            "exit_code": self.exit_code,
            "counts": {
                "written": len(self.written),
                "skipped": len(self.existing) + len(self.not_images),
                "failed": len(self.failed),
            },
            "written": [{"content": str(c), "style": str(s), "output": str(o)} for c, s, o in self.written],
            "skipped": [{"path": str(p), "reason": "output exists"} for p in self.existing]
            + [{"path": str(p), "reason": "not an image"} for p in self.not_images],
            "failed": [{"path": str(p), "reason": reason} for p, reason in self.failed],
            "stopped": self.stopped or None,
        }
        return json.dumps(data, indent=2)
