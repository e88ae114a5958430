import json

import pytest
import torch
from helpers import make_image
from torch import nn

from stylize.images import save_image
from stylize.models import Decoder, Encoder
from stylize.tools import bench
from stylize.training import losses
from stylize.training.config import TrainConfig
from stylize.training.loop import Images, encode, loss_weights


@pytest.fixture
def nets():
    torch.manual_seed(0)
    return Encoder(), Decoder()


def test_the_reference_networks_compute_ours(nets):
    enc, dec = nets
    slices, ref_dec = bench.reference_nets(enc, dec)
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        taps, ours = bench.ref_encode(slices, x), enc(x)
        assert [t.shape for t in taps] == [ours[k].shape for k in ("relu1_1", "relu2_1", "relu3_1", "relu4_1")]
        assert torch.allclose(taps[-1], ours["relu4_1"], atol=1e-5)
        assert torch.allclose(ref_dec(taps[-1]), dec(taps[-1]), atol=1e-5)


def test_the_reference_training_step_has_our_loss(nets):
    enc, dec = nets
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    b = encode(enc, Images(content, style), (), torch.device("cpu"))
    terms = losses.terms(enc, dec, b, loss_weights(TrainConfig()))  # the paper's: content + 10 x style
    lc, ls = terms["content"], terms["style"]
    slices, ref_dec = bench.reference_nets(enc, dec)
    opt = torch.optim.Adam(ref_dec.parameters())
    ref = bench.ref_train_step(slices, ref_dec, opt, content, style, 10.0)
    assert ref == pytest.approx((lc + 10 * ls).item(), rel=1e-4)


def test_model_flops_count_every_convolution(nets):
    enc, dec = nets
    counted = []

    def hook(module, inputs, output):
        counted.append(2 * output.numel() * module.in_channels * 9)

    for m in [*enc.modules(), *dec.modules()]:
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        nn.Sequential(*dec)(enc.relu4_1(torch.rand(1, 3, 64, 96)))  # the plain network: upsampling, then 3x3
    assert sum(bench.model_flops(64, 96)) == sum(counted)


def test_pair_measurements_of_both_ways(tmp_path):
    for name, seed in (("content", 1), ("style", 2)):
        (tmp_path / name).mkdir()
        save_image(make_image(40, 48, seed), tmp_path / name / "000.jpg")
    spec = {"device": "cpu", "folder": str(tmp_path), "repeats": 1, "kind": "pair"}
    ref, ours = (bench.measure({**spec, "impl": impl}) for impl in ("reference", "ours"))
    refined = bench.measure({**spec, "impl": "ours", "refine": 2})
    for r in (ref, ours, refined):
        assert r["images"] == 1 and r["seconds"] > 0 and r["peak_mb"] > 0
    assert ours["rel_err"] < 1e-4  # fp32 CPU: the fast paths give the reference's picture
    assert set(ours["stages"]) == set(bench.STAGES)  # every stage of our run was timed
    assert sum(ours["stages"][t] for t in bench.MAIN_THREAD) <= ours["seconds"]


def test_whole_processes_and_the_page_s_preview(tmp_path):
    for name, seed in (("content", 1), ("style", 2)):
        (tmp_path / name).mkdir()
        save_image(make_image(40, 48, seed), tmp_path / name / "000.jpg")
    runs = bench.processes(tmp_path, repeats=1)
    assert set(runs) == {"reference", "ours", "reference start", "ours start"}
    assert all(r["seconds"] > 0 for r in runs.values())
    assert len(list(tmp_path.glob("*/000_000.jpg"))) == 1  # the reference wrote its picture
    assert len(list(tmp_path.glob("*/000_stylized_000.jpg"))) == 1  # and ours
    view = bench.preview(tmp_path, 64, repeats=1)
    assert view["seconds"] > 0 and view["peak_mb"] > 0


def test_report_states_machine_ratios_and_errors():
    results = {
        "pair 256 reference": {"seconds": 1.0, "peak_mb": 300},
        "pair 256 ours": {"seconds": 0.5, "peak_mb": 200, "rel_err": 1e-5, "max_abs_err": 2e-5},
        "pair 512 reference": {"seconds": 4.0, "peak_mb": 600},
        "pair 512 ours": {"seconds": 2.0, "peak_mb": 400, "rel_err": 1e-5, "max_abs_err": 2e-5},
        "pair 512 ours refine 10": {"seconds": 12.0, "peak_mb": 900},
        "folder 512 reference": {"seconds": 8.0, "images": 8},
        "folder 512 ours": {"seconds": 2.0, "images": 8},
        "train reference": {"seconds": 2.0, "peak_mb": 900, "batch": TrainConfig().batch_size},
        "train ours": {"seconds": 1.0, "peak_mb": 800, "batch": 8},
        "ceiling": {"tflops": 100.0},
        "process reference": {"seconds": 30.0},
        "process ours": {"seconds": 10.0},
        "process reference start": {"seconds": 2.0},
        "process ours start": {"seconds": 3.0},
        "preview 256": {"seconds": 0.25, "peak_mb": 500},
    }
    stages = dict.fromkeys(bench.STAGES, 0.25)
    results["pair 512 ours"]["stages"] = stages  # 4 x 0.25 s in the main thread, of 2 s
    results["folder 512 ours"]["stages"] = stages
    args = bench.parse_args(["--big", "0", "--seams", "0", "--styles", "2"])
    text = bench.report(results, args, torch.device("cpu"), [256, 512], 4)
    assert "| one pair 256x256: latency | 1000 ms, 300 MB | 500 ms, 200 MB" in text
    assert "| 2.00x | 1.0e-05, 2.0e-05 |" in text
    assert "| folder 4 x 2 at 512x512: images/s | 1.00 | 4.00" in text and "| 4.00x |" in text
    assert "| one pair 512x512 with --refine 10: latency | | 12.0 s, 900 MB (1000 ms per step) |" in text
    assert "of the ceiling" in text and "Measured bf16 matmul ceiling: 100 TFLOP/s" in text
    assert "| 4 photos x 2 paintings at 512x512, whole processes: seconds | 30.0 | 10.0 | 3.00x |" in text
    assert "| - of which starting and loading the networks | 2.0 | 3.0 |" in text
    assert "| the page's 256 px preview (a 512 px photo; the painting encoded already): latency | | 250 ms" in text
    assert "| stage | one pair 512x512 (ms) | folder 4 x 2 at 512 px (s) |" in text
    assert "| encode the photo | 250 | 0.2 |" in text and "| write (worker threads) | 250 | 0.2 |" in text
    assert "| the rest (waiting for reads and writes, the command's own work) | 1000 | 1.0 |" in text
    json.dumps(results)
