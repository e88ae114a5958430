"""The shipped decoder's recipe, as weights/MANIFEST.json records it, runs on this code."""

import json

import pytest
import torch
from helpers import ROOT

from stylize.models import Decoder
from stylize.tools import rebuild
from stylize.training import loop as T
from stylize.training.config import to_dict

MANIFEST = ROOT / "weights" / "MANIFEST.json"
RECIPE = rebuild.recipe(MANIFEST)


@pytest.mark.parametrize("stage", RECIPE["stages"], ids=lambda s: s["stage"])
def test_every_stage_of_the_shipped_recipe_trains_a_few_steps(stage, tmp_path, image_dirs, encoder_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipe's config paths are the repository's
    content, style = image_dirs
    torch.save(Decoder().state_dict(), tmp_path / "init.pth")  # stands for the run it starts from
    cfg = rebuild.stage_config(stage)
    start = cfg.init_step if cfg.init_decoder else 0
    tiny = [f"content_dir={content}", f"style_dir={style}", f"encoder={encoder_path}", f"out_dir={tmp_path / 'run'}",
            "image_size=40", "style_image_size=40", "crop_size=32", f"steps={start + 2}",
            "threads=1", "num_workers=0", "log_every=1", "checkpoint_every=2", "sample_every=2", "sample_pairs=2",
            "sample_size=32"]  # fmt: skip
    tiny += [f"init_decoder={tmp_path / 'init.pth'}"] if cfg.init_decoder else []
    tiny += [f"cache_dir={tmp_path / 'cache'}"] if cfg.cache_dir else []
    T.train(rebuild.stage_config(stage, tiny))
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == start + 2
    shrunk = {kv.partition("=")[0] for kv in tiny}  # the rest is the stage's own
    assert {k: v for k, v in stage["set"].items() if k not in shrunk} == {
        k: ckpt["config"][k] for k in stage["set"] if k not in shrunk
    }


def test_the_recipe_adds_up_to_the_shipped_decoder():
    entry = json.loads(MANIFEST.read_text())["decoder.pth"]
    last = {}  # per run: (step, images) where its previous stage ended
    for s in RECIPE["stages"]:
        begin, end = s["steps"]
        cfg = rebuild.stage_config(s)
        assert cfg.steps == end > begin, s["stage"]
        if s["run"] in last:  # a stage goes on in its run where the last one stopped
            assert last[s["run"]][0] == begin, s["stage"]
            before = last[s["run"]][1]
        else:  # a new run starts from a decoder trained that far (or from random weights)
            assert (cfg.init_step if cfg.init_decoder else 0) == begin, s["stage"]
            before = cfg.init_images if cfg.init_decoder else 0
        assert s["images_seen"] == before + (end - begin) * cfg.batch_size, s["stage"]
        last[s["run"]] = (end, s["images_seen"])
    first = RECIPE["soup"][0]
    assert last[first] == (entry["steps"], entry["images_seen"])  # the soup's first run is the decoder's record
    assert [(i["run"], i["steps"], i["images_seen"]) for i in entry["ingredients"]] == [
        (run, *last[run]) for run in RECIPE["soup"]
    ]
    assert entry["config"] == to_dict(rebuild.stage_config(RECIPE["stages"][-1]))


def test_the_manifest_names_no_folder_of_one_machine():
    def strings(x):
        if isinstance(x, dict):
            yield from (s for v in x.values() for s in strings(v))
        elif isinstance(x, list):
            yield from (s for v in x for s in strings(v))
        elif isinstance(x, str):
            yield x

    assert not [s for s in strings(json.loads(MANIFEST.read_text())) if s.startswith(("/", "~")) or " /" in s]


def test_the_commands_go_from_random_weights_to_the_soup(capsys):
    rebuild.main([])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(RECIPE["stages"]) + 1
    assert lines[0].startswith("stylize-adain-train --config configs/cpu_128.yaml --set out_dir=runs/provisional")
    assert "--set 'skip_taps=[]'" in lines[0] and "--set cache_dir= --set" in lines[0]
    assert (
        lines[-1]
        == "python -m stylize.tools.weights export-decoder runs/cpu_main runs/cpu_last --out runs/rebuilt/decoder.pth"
    )
