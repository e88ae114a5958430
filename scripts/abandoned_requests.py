"""Time what abandoned requests cost a user of the page's server (BENCHMARKS.md): five clients post
and give up after 0.5 s, then a user posts (retrying on 503 every 0.5 s) and waits for the answer.

    python scripts/abandoned_requests.py PHOTO PAINTING [--size 512]
"""

from __future__ import annotations

import argparse
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import torch

from stylize.stylizer import Stylizer
from stylize.web import Limits, create_app, serving


def post(url: str, photo: bytes, painting: bytes, size: int, timeout: float) -> int | str:
    """The answer's status, or the name of the error that ended the wait."""
    b = uuid.uuid4().hex
    parts = [('name="content"; filename="p.jpg"', photo), ('name="style"; filename="s.jpg"', painting)]
    parts.append(('name="size"', str(size).encode()))
    body = b"".join(f"--{b}\r\nContent-Disposition: form-data; {d}\r\n\r\n".encode() + v + b"\r\n" for d, v in parts)
    body += f"--{b}--\r\n".encode()
    req = urllib.request.Request(f"{url}/api/stylize", body, {"Content-Type": f"multipart/form-data; boundary={b}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:  # the client's timeout: it gives up
        return type(e).__name__


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo", type=Path)
    p.add_argument("painting", type=Path)
    p.add_argument("--size", type=int, default=512)
    args = p.parse_args()
    torch.set_num_threads(2)
    ask = (args.photo.read_bytes(), args.painting.read_bytes(), args.size)
    with serving(create_app(Stylizer.from_pretrained(device="cpu"), Limits(queue=4))) as url:
        t0 = time.perf_counter()
        print(f"one job alone: {post(url, *ask, 120)} in {time.perf_counter() - t0:.1f} s")
        clients = [threading.Thread(target=post, args=(url, *ask, 0.5)) for _ in range(5)]
        for c in clients:
            c.start()
            time.sleep(0.05)
        for c in clients:
            c.join()
        t0, refused = time.perf_counter(), 0
        while (status := post(url, *ask, 120)) == 503:
            refused += 1
            time.sleep(0.5)
        print(f"the user after five abandoned: {status} in {time.perf_counter() - t0:.1f} s ({refused} x 503)")


if __name__ == "__main__":
    main()
