"""`python -m stylize.web` / `stylize-adain-web`: a local page to stylize in, and the HTTP API it uses.

POST /api/stylize takes the images (multipart files `content`, `style`, optionally `style2`) and
the settings (form fields) and answers the stylized image. One worker thread runs the requests
one at a time on the device, with at most `Limits.queue` waiting: parallel users cannot exhaust
its memory. Starlette + uvicorn, the optional `web` extra; the page is `stylize/static/`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import io
import ipaddress
import logging
import math
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, NoReturn
from urllib.parse import urlsplit

import torch

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.datastructures import FormData, Headers, MutableHeaders, UploadFile
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as e:
    raise ImportError(f"{e.name} is missing: the web page needs the web extra (pip install -e '.[web]')") from e

from stylize import __version__
from stylize.images import (
    ImageError,
    TooLargeError,
    list_images,
    load_image,
    resize_short,
    tensor_to_pil,
)
from stylize.memory import release_memory
from stylize.options import COLOR_MODES, DEFAULT_DECODER, DEFAULT_ENCODER, EXAMPLES_DIR, STYLE_SIZE
from stylize.stylizer import StyleStats, Stylizer
from stylize.weights import WeightsError

STATIC = Path(__file__).resolve().parent / "static"
MIN_SIZE = 64  # the smallest output size one may ask for
FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}
LOG = logging.getLogger("stylize.web")
REFINE_STEPS = ("0", "5", "10", "20")  # --refine here: each step about 2-3 s at 512 px on a 2-core CPU
UPLOADS = {"content": "photo", "style": "painting", "style2": "second painting"}  # field -> name in messages
# The page may load only what this server sends: nothing from another host, even by mistake; and
# no other site may show it in a frame (every answer says so: Guard).
PAGE_POLICY = "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
SAFE_HEADERS = {"x-content-type-options": "nosniff", "content-security-policy": "frame-ancestors 'none'"}


def own_names(host: str = "") -> set[str]:
    """The names this server answers to, besides IP addresses: localhost, this machine's names and a
    `--host` given as a name. A page of another site that points its own DNS name at this
    computer (DNS rebinding) sends that name as Host, and is refused."""
    names = {"localhost", socket.gethostname(), socket.getfqdn(), host}
    return {n.lower().rstrip(".") for n in names if n}


def refusal(method: str, headers: Headers, names: set[str]) -> str | None:
    """Why a request is refused (403), or None: a Host that is not this server's, or a POST that
    another site's page sends (its Origin is not this server, or the browser says cross-site)."""
    host = headers.get("host", "")
    name = (urlsplit(f"//{host}").hostname or "").rstrip(".")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        names = names | {name}  # reached by an address: this server's own
    if name not in names:
        return f"Host {host!r} is not this server's name or address"
    origin = headers.get("origin")
    cross = headers.get("sec-fetch-site") == "cross-site" or (origin is not None and urlsplit(origin).netloc != host)
    if method == "POST" and cross:
        return f"a request from another site ({origin or 'cross-site'}) is refused"
    return None


class Guard:
    """ASGI middleware: refuses requests that `refusal` names, and sets `SAFE_HEADERS` on every answer
    (a header a route sets, as the page's fuller policy, stays)."""

    def __init__(self, app: Callable, names: set[str]) -> None:
        self.app, self.names = app, names

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_safe(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SAFE_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        if reason := refusal(scope["method"], Headers(scope=scope), self.names):
            return await JSONResponse({"error": reason}, 403)(scope, receive, send_safe)
        await self.app(scope, receive, send_safe)


@dataclasses.dataclass(frozen=True)
class Limits:
    upload_mb: float = 50.0  # one request, all its images together
    # each image, checked before it is decoded: below the command line's 100, as a page's upload costs the
    # server its decoding (a 120 kB PNG of 9990 x 9990 px took 16 s and 3.2 GB)
    megapixels: float = 40.0
    max_size: int = 1024  # the output's long side
    queue: int = 4  # requests waiting behind the one being served


@dataclasses.dataclass(frozen=True)
class Settings:
    alpha: float
    preserve_color: str | None
    style2_weight: float  # the second painting's share of the mix
    refine: int  # steps of stylize.refine
    size: int  # the output's long side at most
    format: str


class Upload(NamedTuple):
    path: Path  # in the request's temporary folder
    label: str  # how messages name it: "photo (cat.jpg)"
    digest: str  # SHA-256 of the bytes


class Painting(NamedTuple):
    image: torch.Tensor  # kept for colour preservation, which matches it to each photo, and refinement
    stats: StyleStats


class Abandoned(Exception):
    """The request's client went away: its job leaves the queue, or stops at its next stage."""


class Ticket:
    """A job in the queue: its function (given `check`), its result, and whether it was abandoned."""

    def __init__(self, job: Callable[[Callable[[], None]], Any]) -> None:
        self.job, self.future, self.gone = job, concurrent.futures.Future(), threading.Event()

    def check(self) -> None:
        """Called by the job between its stages: stops it once its client has gone."""
        if self.gone.is_set():
            raise Abandoned


class DeviceQueue:
    """A worker thread that runs jobs one at a time; at most `size` wait, more are refused (503)
    with a Retry-After from the queue's length and the jobs' running mean time. A job whose
    request is abandoned (`run`'s `gone()` finishes first) leaves the queue at once, or, running,
    stops at its next `Ticket.check`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending: collections.deque[Ticket] = collections.deque()
        self.lock = threading.Condition()
        self.closing = False
        self.mean = 1.0  # seconds a job takes, a running mean (the first job replaces this guess)
        self.done = 0
        self.started: float | None = None  # when the running job began
        self.running: Ticket | None = None
        self.thread = threading.Thread(target=self._work, name="stylize-web-device", daemon=True)
        self.thread.start()

    async def run(self, job: Callable[[Callable[[], None]], Any], gone: Callable[[], Awaitable] | None = None) -> Any:
        """`job(check)`'s result, run in the worker; Abandoned if `gone()` finishes first."""
        ticket = self.add(job)
        result = asyncio.wrap_future(ticket.future)
        if gone is None:
            return await result
        watch = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({result, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if not result.done():
            if self.abandon(ticket):  # it was waiting: out of the queue, its future cancelled
                result.cancel()
            else:  # running: wait for it to stop at its next check, as it still reads the uploads
                await asyncio.wait({result})
                if not result.cancelled():
                    result.exception()  # Abandoned, most likely: retrieved, so asyncio logs nothing
            raise Abandoned
        return result.result()

    def add(self, job: Callable[[Callable[[], None]], Any]) -> Ticket:
        with self.lock:
            if len(self.pending) >= self.size:
                wait = self.retry_after()
                msg = f"the server is busy with other requests; try again in {wait} s"
                raise HTTPException(503, msg, {"Retry-After": str(wait)})
            self.pending.append(ticket := Ticket(job))
            self.lock.notify()
        return ticket

    def abandon(self, ticket: Ticket) -> bool:
        """Mark the ticket's client gone; True if it was still waiting (and now leaves the queue)."""
        with self.lock:
            ticket.gone.set()
            if ticket in self.pending:
                self.pending.remove(ticket)
                return True
            return False

    def retry_after(self) -> int:
        """Whole seconds until the work ahead is likely done: what the running job has left of the
        mean time, and the mean time for each job waiting."""
        running = self.started
        left = max(0.0, self.mean - (time.perf_counter() - running)) if running is not None else 0.0
        return max(1, math.ceil(left + self.mean * self.waiting()))

    def waiting(self) -> int:
        return len(self.pending)

    def close(self) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify()
        self.thread.join()

    def _next(self) -> Ticket | None:
        with self.lock:
            while not self.pending and not self.closing:
                self.lock.wait()
            return self.pending.popleft() if self.pending else None

    def _work(self) -> None:
        while (ticket := self._next()) is not None:
            if ticket.gone.is_set() or not ticket.future.set_running_or_notify_cancel():  # its client has gone
                ticket.future.cancel()
                continue
            self.started, self.running = time.perf_counter(), ticket
            try:
                ticket.future.set_result(ticket.job(ticket.check))
            except BaseException as e:  # handed to the request, which answers it
                ticket.future.set_exception(e)
            seconds, self.started, self.running = time.perf_counter() - self.started, None, None
            release_memory()
            if not ticket.gone.is_set():  # a job stopped part way is no measure of the time one takes
                self.done += 1
                self.mean = seconds if self.done == 1 else 0.7 * self.mean + 0.3 * seconds


class StyleCache:
    """Paintings decoded and encoded once, by the hash of their bytes (the page sends the same
    files again for every change of a setting); the least recently used go first."""

    def __init__(self, stylizer: Stylizer, size: int = 16) -> None:
        self.stylizer, self.size = stylizer, size
        self.paintings: OrderedDict[str, Painting] = OrderedDict()

    def get(self, upload: Upload, max_pixels: int) -> Painting:
        if upload.digest not in self.paintings:
            image = resize_short(read(upload, max_pixels), STYLE_SIZE)
            self.paintings[upload.digest] = Painting(image, self.stylizer.style_stats(image))
            if len(self.paintings) > self.size:
                self.paintings.popitem(last=False)
        self.paintings.move_to_end(upload.digest)
        return self.paintings[upload.digest]


def read(upload: Upload, max_pixels: int, max_side: int = 0) -> torch.Tensor:
    """Decode with stylize.images' checks (shrunk to `max_side` as it is decoded); messages name the
    upload, not the temporary file, and speak of the page, not of the command line's options."""
    try:
        return load_image(upload.path, max_pixels=max_pixels, max_side=max_side)
    except TooLargeError as e:
        raise TooLargeError(upload.label, e.size, e.limit, "this server's limit: choose a smaller image") from None
    except ImageError as e:
        raise type(e)(str(e).replace(str(upload.path), upload.label)) from None


def render(
    stylizer: Stylizer,
    styles: StyleCache,
    uploads: dict[str, Upload],
    s: Settings,
    limits: Limits,
    check: Callable[[], None],
) -> bytes:
    """The stylized image, encoded as `s.format` (runs in the device's worker thread; `check`
    between the stages stops it when its request is abandoned)."""
    max_pixels = int(limits.megapixels * 1e6)
    content = read(uploads["content"], max_pixels, s.size)  # the asked size, never the photo's 100 MP in float
    paintings = []
    for field in ("style", "style2"):
        if field in uploads:
            check()
            paintings.append(styles.get(uploads[field], max_pixels))
    weights = [1 - s.style2_weight, s.style2_weight] if len(paintings) == 2 else None
    chosen = [p.image if s.preserve_color or s.refine else p.stats for p in paintings]
    controls = {"weights": weights, "preserve_color": s.preserve_color, "refine": s.refine, "check": check}
    out = stylizer.stylize(content, chosen, s.alpha, **controls)
    check()
    buf = io.BytesIO()
    tensor_to_pil(out).save(buf, format=s.format.upper(), **({"quality": 92} if s.format == "jpeg" else {}))
    return buf.getvalue()


async def disconnected(request: Request) -> None:
    """Returns once the request's client has gone. Its body is read by now, so the next message
    the server gives is the disconnection (or, after the answer, the end of the request)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def number(form: FormData, name: str, default: float, low: float, high: float) -> float:
    raw = form.get(name, default)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not low <= value <= high:
        raise HTTPException(400, f"{name} must be a number from {low:g} to {high:g}, got {raw!r}")
    return value


def whole(form: FormData, name: str, default: int, low: int, high: int) -> int:
    """A whole number in [low, high]: 100.7 px is refused, not rounded behind the caller's back."""
    value = number(form, name, default, low, high)
    if value != int(value):
        raise HTTPException(400, f"{name} must be a whole number of px from {low} to {high}, got {form.get(name)!r}")
    return int(value)


def choice(form: FormData, name: str, options: tuple[str, ...]) -> str:
    value = form.get(name, options[0])
    if value not in options:
        raise HTTPException(400, f"{name} must be one of {', '.join(options)}, got {value!r}")
    return str(value)


def parse_settings(form: FormData, limits: Limits) -> Settings:
    color = choice(form, "preserve_color", ("off", *COLOR_MODES))
    return Settings(
        alpha=number(form, "alpha", 1.0, 0.0, 1.0),
        preserve_color=None if color == "off" else color,
        style2_weight=number(form, "style2_weight", 0.5, 0.0, 1.0),
        refine=int(choice(form, "refine", REFINE_STEPS)),
        size=whole(form, "size", limits.max_size, MIN_SIZE, limits.max_size),
        format=choice(form, "format", tuple(FORMATS)),
    )


def check_length(request: Request, limits: Limits) -> None:
    """Refuse a large upload from its Content-Length, before reading it."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise HTTPException(411, "send the upload with a Content-Length header")
    if int(length) > limits.upload_mb * 1e6:
        raise HTTPException(413, f"the upload is {int(length) / 1e6:.3g} MB, over the limit of {limits.upload_mb:g} MB")


def save_uploads(form: FormData, folder: Path) -> dict[str, Upload]:
    """The uploaded files, copied into `folder` (removed with it after the request)."""
    uploads = {}
    for field, name in UPLOADS.items():
        item = form.get(field)
        if item is None or item == "":
            if field == "style2":  # optional
                continue
            raise HTTPException(400, f"no {name}: send it as the file field {field!r}")
        if not isinstance(item, UploadFile):
            raise HTTPException(400, f"{field} must be a file upload, not a text field")
        path, digest = folder / field, hashlib.sha256()
        with path.open("wb") as out:
            while chunk := item.file.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        uploads[field] = Upload(path, f"{name} ({item.filename})" if item.filename else name, digest.hexdigest())
    return uploads


def create_app(stylizer: Stylizer, limits: Limits = Limits(), names: set[str] | None = None) -> Starlette:
    """The page and the API around one loaded Stylizer, answering to IP addresses and `names`
    (default: `own_names()`)."""
    styles = StyleCache(stylizer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.queue = DeviceQueue(limits.queue)
        yield
        app.state.queue.close()

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    async def info(request: Request) -> Response:
        found = {kind: [p.name for p in list_images(EXAMPLES_DIR / kind)] for kind in ("content", "style")}
        return JSONResponse({"examples": found, "limits": dataclasses.asdict(limits), "min_size": MIN_SIZE})

    async def stylize(request: Request) -> Response:
        check_length(request, limits)
        who = request.client.host if request.client else "?"
        try:
            return await answer(request)
        except ClientDisconnect:  # gone mid-upload: nothing to answer, nothing to fix
            LOG.warning("a client went away during its upload (%s)", who)
            return Response(status_code=400)
        except Abandoned:  # gone while its job waited or ran: the job is dropped, no one reads an answer
            LOG.info("a client went away before its picture was ready (%s)", who)
            return Response(status_code=499)

    async def answer(request: Request) -> Response:
        async with request.form(max_files=len(UPLOADS), max_fields=16) as form:
            settings = parse_settings(form, limits)
            with tempfile.TemporaryDirectory(prefix="stylize-web-") as tmp:
                job = functools.partial(render, stylizer, styles, save_uploads(form, Path(tmp)), settings, limits)
                try:
                    data = await request.app.state.queue.run(job, functools.partial(disconnected, request))
                except TooLargeError as e:
                    raise HTTPException(413, str(e)) from None
                except ImageError as e:
                    raise HTTPException(400, str(e)) from None
                except (torch.OutOfMemoryError, MemoryError):
                    raise HTTPException(500, "out of memory: choose a smaller output size") from None
        return Response(data, media_type=FORMATS[settings.format])

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code, exc.headers)

    async def failed(request: Request, exc: Exception) -> Response:  # the traceback goes to the server's log
        return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc})"}, 500)

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/stylize", stylize, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
        Mount("/examples", StaticFiles(directory=EXAMPLES_DIR, check_dir=False)),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: refused, Exception: failed},
        middleware=[Middleware(Guard, names=own_names() if names is None else names)],
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one); OSError when the address cannot be had."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def address(sock: socket.socket) -> str:
    """The page's address to open on this computer: a server on every interface (0.0.0.0, ::) is
    reached at the loopback address (other machines use this one's name or address)."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def exposure_warning(host: str) -> str | None:
    """A warning when `host` lets other machines in (the server has no password and no TLS)."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return None
    if host == "localhost":
        return None
    return (
        f"warning: --host {host} lets other machines on the network use this server, which has no "
        "password and no encryption; the default, 127.0.0.1, keeps it to this computer"
    )


@contextlib.contextmanager
def serving(app: Starlette, host: str = "127.0.0.1", timeout: float = 30.0) -> Iterator[str]:
    """Run `app` on a free port in a background thread (tests, the README's screenshot); yields its address."""
    sock = listen(host, 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        yield address(sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stylize-adain-web",
        description="Serve a page to stylize photos in the browser, and its HTTP API (POST /api/stylize).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this computer only)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default: 8000)")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1... (default: auto)")
    p.add_argument("--encoder", default=str(DEFAULT_ENCODER), help="encoder weights file or URL#sha256=HEX")
    p.add_argument("--decoder", default=str(DEFAULT_DECODER), help="decoder weights file or URL#sha256=HEX")
    d = Limits()
    p.add_argument(
        "--max-size", type=int, default=d.max_size, help=f"largest output side in px (default: {d.max_size})"
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=d.megapixels,
        help=f"refuse images over N megapixels before decoding them; 0 for no limit (default: {d.megapixels:g})",
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=d.upload_mb, help=f"largest request in MB (default: {d.upload_mb:g})"
    )
    p.add_argument(
        "--queue", type=int, default=d.queue, help=f"requests that may wait behind the running one (default: {d.queue})"
    )
    args = p.parse_args(argv)
    if args.queue < 1 or args.max_size < MIN_SIZE or args.max_megapixels < 0 or args.max_upload_mb <= 0:
        p.error(
            f"--queue must be at least 1, --max-size at least {MIN_SIZE}, --max-upload-mb positive "
            "and --max-megapixels 0 (no limit) or more"
        )
    return args


def fail(reason: str) -> NoReturn:
    print(f"stylize-adain-web: error: {reason}", file=sys.stderr)
    raise SystemExit(2)  # a usage error, as the command line's


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if warning := exposure_warning(args.host):
        print(warning, file=sys.stderr)
    try:
        sock = listen(args.host, args.port)
    except OSError as e:
        fail(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})")
    try:
        stylizer = Stylizer.from_pretrained(args.encoder, args.decoder, args.device)
    except (WeightsError, RuntimeError) as e:  # RuntimeError: an unknown --device
        fail(str(e))
    limits = Limits(args.max_upload_mb, args.max_megapixels, args.max_size, args.queue)
    print(f"stylize-adain-web: open {address(sock)} in a browser (on {stylizer.device}; Ctrl-C stops)", flush=True)
    app = create_app(stylizer, limits, own_names(args.host))
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
