"""The ONNX export computes what the Stylizer does, with onnxruntime and numpy alone."""

import numpy as np
import pytest
from helpers import ROOT

from stylize.images import load_image, resize_short
from stylize.stylizer import Stylizer, _pad8
from stylize.tools import onnx as X
from stylize.weights import load_decoder, load_encoder

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")  # the exporter writes with it


def test_onnxruntime_paints_what_torch_paints_within_an_8_bit_step(tmp_path):
    encoder, decoder = load_encoder(), load_decoder()  # the shipped ones: real features, real skips
    X.main([str(tmp_path)])
    enc, dec = (ort.InferenceSession(str(tmp_path / f"{n}.onnx")) for n in ("encoder", "decoder"))
    photo = load_image(ROOT / "examples" / "content" / "coffee.jpg")[:, :203, :301]  # not the export's size
    painting = resize_short(load_image(ROOT / "examples" / "style" / "mosaic.jpg"), 200)
    inputs, taps = X.names(decoder.skip_taps)
    assert [i.name for i in dec.get_inputs()] == inputs and [o.name for o in enc.get_outputs()] == taps
    content = enc.run(None, {"image": _pad8(photo[None]).numpy()})
    style = enc.run(None, {"image": _pad8(painting[None]).numpy()})
    means = [f.mean(axis=(2, 3), keepdims=True) for f in style]
    stds = [np.sqrt(f.var(axis=(2, 3), keepdims=True) + 1e-5) for f in style]
    outputs = []
    for alpha in (1.0, 0.6):
        feed = dict(zip(inputs, [*content, *means, *stds, np.array([alpha], np.float32)]))
        got = dec.run(None, feed)[0][0, :, : photo.shape[1], : photo.shape[2]]
        want = Stylizer(encoder, decoder, "cpu").stylize(photo, _pad8(painting[None])[0], alpha).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1 / 255, (alpha, np.abs(got - want).max())
        outputs.append(got)
    assert np.abs(outputs[0] - outputs[1]).max() > 0.01  # alpha is an input, not baked in


def test_a_missing_weights_file_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        X.main([str(tmp_path), "--decoder", str(tmp_path / "nope.pth")])
    assert "nope.pth: no such file" in str(exit_info.value.code)
