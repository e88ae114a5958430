"""Tools run as `python -m stylize.tools.NAME`: evaluate, bench, weights, onnx, rebuild, step_time."""
