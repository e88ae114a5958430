"""Export the encoder and the decoder to ONNX, for deploying without torch: `python -m stylize.tools.onnx DIR`.

Writes DIR/encoder.onnx and DIR/decoder.onnx (opset 18, float32, any batch, height and width):

- encoder.onnx: `image` (N, 3, H, W), RGB in [0, 1], H and W multiples of 8 (pad by reflection and
  crop the output, as the Stylizer does) -> `relu4_1` and the features of the decoder's skip taps
  (`relu2_1`, `relu3_1` for the shipped decoder). Run it on the photo and on the painting.
- decoder.onnx: the photo's `relu4_1` and skip taps' features, the painting's channel mean and std
  at each of those taps (`style_mean_relu4_1`, `style_std_relu4_1`, ..., each (N, C, 1, 1): the
  mean and the square root of the variance + 1e-5 over the painting's features), and `alpha`
  (a float tensor of shape (1,)) -> `image` (N, 3, H, W) in [0, 1]. AdaIN happens inside, with the
  skip taps capped as the Stylizer caps them.

docs/usage.md shows a stylization with onnxruntime and numpy alone. Needs the `onnx` extra.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from stylize.models import SKIP_CAP, Decoder, Encoder, adain_maps, mean_std
from stylize.options import DEFAULT_DECODER, DEFAULT_ENCODER, EXAMPLES_DIR
from stylize.weights import WeightsError, load_decoder, load_encoder

OPSET = 18


class EncoderGraph(nn.Module):
    """The encoder's taps as a tuple: relu4_1, then the skip taps in the decoder's order."""

    def __init__(self, encoder: Encoder, skip_taps: tuple[str, ...]) -> None:
        super().__init__()
        self.encoder, self.skip_taps = encoder, skip_taps

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        taps = self.encoder(image)
        return (taps["relu4_1"], *(taps[t] for t in self.skip_taps))


class DecoderGraph(nn.Module):
    """AdaIN from the photo's features and the painting's statistics, then the decoder, clamped."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder, self.taps = decoder, ("relu4_1", *decoder.skip_taps)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        n = len(self.taps)
        feats, means, stds, alpha = inputs[:n], inputs[n : 2 * n], inputs[2 * n : 3 * n], inputs[-1]
        content = {t: mean_std(f) for t, f in zip(self.taps, feats)}
        style = {t: (m, s) for t, m, s in zip(self.taps, means, stds)}
        maps = adain_maps(content, style, 1.0, SKIP_CAP)
        mixed = [alpha * maps[t](f) + (1 - alpha) * f for t, f in zip(self.taps, feats)]  # alpha as an input
        return self.decoder(mixed[0], dict(zip(self.decoder.skip_taps, mixed[1:]))).clamp(0, 1)


def names(skip_taps: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The decoder graph's input names and the encoder graph's output names."""
    taps = ["relu4_1", *skip_taps]
    return [*taps, *(f"style_mean_{t}" for t in taps), *(f"style_std_{t}" for t in taps), "alpha"], taps


def export(encoder: Encoder, decoder: Decoder, out: Path) -> tuple[Path, Path]:
    """Write out/encoder.onnx and out/decoder.onnx; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    skip_taps = decoder.skip_taps
    inputs, taps = names(skip_taps)
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats = EncoderGraph(encoder, skip_taps)(image)
    stats = [mean_std(f) for f in feats]
    args = (*feats, *(m for m, _ in stats), *(s for _, s in stats), torch.ones(1))
    spatial = {0: "n", 2: "h", 3: "w"}
    paths = out / "encoder.onnx", out / "decoder.onnx"
    _export(EncoderGraph(encoder, skip_taps), (image,), paths[0], ["image"], taps, {"image": spatial})
    dynamic = {name: spatial for name in taps} | {name: {0: "n"} for name in inputs[len(taps) : -1]}
    _export(DecoderGraph(decoder), args, paths[1], inputs, ["image"], dynamic)
    return paths


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    # the TorchScript exporter: dynamic height and width need no shape constraints there (the
    # torch.export one asks for them on every pooling); its deprecation and folding notes are not
    # the user's business
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        torch.onnx.export(
            module.eval(), args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
            output_names=outputs, dynamic_axes=dynamic,
        )  # fmt: skip


def bench(folder: Path, size: int = 512, runs: int = 5, threads: int = 2) -> dict[str, float]:
    """Median seconds of one size x size pair (photo and painting encoded, AdaIN, decoded), in memory:
    our torch path (the Stylizer) against onnxruntime on the exported graphs, `threads` each."""
    import onnxruntime as ort

    from stylize.images import load_image, resize_short
    from stylize.stylizer import Stylizer, _pad8

    torch.set_num_threads(threads)
    root = EXAMPLES_DIR
    photo = torch.nn.functional.interpolate(load_image(root / "content" / "chelsea.jpg")[None], (size, size))[0]
    painting = resize_short(load_image(root / "style" / "strokes.jpg"), 256)
    stylizer = Stylizer.from_pretrained(device="cpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    enc, dec = (ort.InferenceSession(str(folder / f"{n}.onnx"), options) for n in ("encoder", "decoder"))
    inputs, _ = names(stylizer.engine.skip_taps)

    def with_onnxruntime() -> None:
        content = enc.run(None, {"image": photo[None].numpy()})
        style = enc.run(None, {"image": _pad8(painting[None]).numpy()})
        means = [f.mean(axis=(2, 3), keepdims=True) for f in style]
        stds = [(f.var(axis=(2, 3), keepdims=True) + 1e-5) ** 0.5 for f in style]
        dec.run(None, dict(zip(inputs, [*content, *means, *stds, torch.ones(1).numpy()])))

    def timed(fn) -> float:  # noqa: ANN001
        fn()  # a warm-up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return {"torch": timed(lambda: stylizer.stylize(photo, painting)), "onnxruntime": timed(with_onnxruntime)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m stylize.tools.onnx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out", type=Path, help="folder for encoder.onnx and decoder.onnx")
    p.add_argument("--encoder", default=str(DEFAULT_ENCODER))
    p.add_argument("--decoder", default=str(DEFAULT_DECODER))
    p.add_argument("--bench", action="store_true", help="then time one 512 px pair: torch against onnxruntime")
    args = p.parse_args(argv)
    try:
        paths = export(load_encoder(args.encoder), load_decoder(args.decoder), args.out)
    except WeightsError as e:
        sys.exit(f"error: {e}")
    except ImportError as e:
        sys.exit(f"error: {e} (pip install 'stylize-adain[onnx]')")
    print(f"wrote {paths[0]} and {paths[1]}")
    if args.bench:
        t = bench(args.out)
        ratio = t["torch"] / t["onnxruntime"]
        print(f"one 512x512 pair, in memory, 2 threads: torch {t['torch']:.3f} s, onnxruntime {t['onnxruntime']:.3f} s")
        print(
            f"onnxruntime is {ratio:.2f}x as fast as the torch path"
            if ratio > 1
            else f"torch is {1 / ratio:.2f}x as fast"
        )


if __name__ == "__main__":
    main()
