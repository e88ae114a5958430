"""The shipped decoder's recipe, as commands: `python -m stylize.tools.rebuild [--run]`.

weights/MANIFEST.json records how `decoder.pth` was made: its training stages (each a config in
configs/ with the keys it changed, the run folder it trained in and the steps it went from and
to) and the soup of run folders averaged into the file. This prints the chain of commands from
random weights to that file, or, with `--run`, runs it: about 33 hours on a 2-core CPU
(docs/training.md). Every stage resumes from its run's checkpoint, so a stopped rebuild goes on
where it stopped when run again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from stylize.options import WEIGHTS_DIR
from stylize.training.config import TrainConfig, load_config


def recipe(manifest: Path = WEIGHTS_DIR / "MANIFEST.json", name: str = "decoder.pth") -> dict:
    """The `recipe` the manifest records for the weights file `name`: {"stages": [...], "soup": [...]}."""
    return json.loads(manifest.read_text())[name]["recipe"]


def overrides(stage: dict) -> list[str]:
    """A stage's `--set` values: its run folder, then the keys it changes."""
    values = {"out_dir": stage["run"], **stage["set"]}
    return [f"{k}={_yaml(v)}" for k, v in values.items()]


def _yaml(value: object) -> str:
    """`value` as `--set` parses it back (YAML flow style; `key=` empties a string)."""
    if value == "":
        return ""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def stage_config(stage: dict, extra: list[str] = ()) -> TrainConfig:
    """A stage's config as train.py reads it (`extra` overrides last, e.g. for a test on tiny images)."""
    return load_config(stage["config"], overrides(stage) + list(extra))


def commands(r: dict, out: str = "weights/decoder.pth") -> list[list[str]]:
    """The commands that rebuild the file: one training command a stage, then the soup's export."""
    train = [["stylize-adain-train", "--config", s["config"], *(a for kv in overrides(s) for a in ("--set", kv))]
             for s in r["stages"]]  # fmt: skip
    return [*train, ["python", "-m", "stylize.tools.weights", "export-decoder", *r["soup"], "--out", out]]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m stylize.tools.rebuild",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", action="store_true", help="run the commands (~33 hours on a 2-core CPU), not print them")
    p.add_argument("--out", default="runs/rebuilt/decoder.pth", help="where the soup is written (default: %(default)s)")
    args = p.parse_args(argv)
    r = recipe()
    for cmd in commands(r, args.out):
        print(shlex.join(cmd), flush=True)
        if args.run:  # the same commands through this Python, installed or not
            train = cmd[0] == "stylize-adain-train"
            exe = [sys.executable, "-m", "stylize.training.loop"] if train else [sys.executable]
            if done := subprocess.run([*exe, *cmd[1:]]).returncode:
                sys.exit(done)


if __name__ == "__main__":
    main()
