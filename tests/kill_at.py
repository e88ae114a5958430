"""Run train.py or infer.py, SIGKILLing every process at its Nth call of a function: a real kill
at a known point, for the resume tests. Used by tests/test_distributed.py as

    torchrun ... tests/kill_at.py stylize.training.losses:terms 4 stylize.training.loop --config ...
"""

import importlib
import os
import signal
import sys

target, n, entry, *args = sys.argv[1:]
module_name, name = target.split(":")
module = importlib.import_module(module_name)
real, calls = getattr(module, name), 0


def killing(*a, **kw):
    global calls
    calls += 1
    if calls == int(n):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **kw)


setattr(module, name, killing)
importlib.import_module(entry).main(args)
