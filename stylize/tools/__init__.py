"""Tools run as `python -m stylize.tools.NAME`: evaluate, bench, weights, rebuild, step_time."""
