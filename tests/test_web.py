"""The web page's HTTP API through Starlette's test client: shipped weights, small images, CPU."""

from __future__ import annotations

import http.client
import io
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from helpers import ROOT, jpeg_bytes, make_image
from PIL import Image
from starlette.testclient import TestClient

from stylize import web
from stylize.images import limit_long, load_image, pil_to_tensor, resize_short, tensor_to_pil
from stylize.options import STYLE_SIZE
from stylize.stylizer import Stylizer
from stylize.web import STATIC, DeviceQueue, Limits, address, create_app, exposure_warning, main, serving


def png_bytes(h: int, w: int, seed: int) -> bytes:
    buf = io.BytesIO()
    tensor_to_pil(make_image(h, w, seed)).save(buf, format="PNG")
    return buf.getvalue()


PHOTO, PAINTING, PAINTING2 = png_bytes(72, 96, 1), png_bytes(80, 64, 2), png_bytes(64, 64, 3)
LOCAL = "http://127.0.0.1:8000"  # the address the page is opened at


def decode(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as img:
        return pil_to_tensor(img)


def post(client: TestClient, files: dict | None = None, **fields) -> object:
    files = files or {"content": ("photo.png", PHOTO), "style": ("painting.png", PAINTING)}
    return client.post("/api/stylize", files=files, data={k: str(v) for k, v in fields.items()})


@pytest.fixture(scope="module")
def stylizer(encoder_path: Path) -> Stylizer:
    return Stylizer.from_pretrained(encoder_path, device="cpu")  # and the shipped decoder


@pytest.fixture
def uploads_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder the server gets: tests check that it is left empty."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def expected(stylizer: Stylizer, photo: bytes, paintings: list[bytes], alpha: float, size: int, **controls):
    """What the API should answer, computed with the Python API directly (8-bit, as a PNG holds it)
    from the photo decoded at the size asked, as the server decodes it."""
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(photo)
        f.flush()
        content = load_image(f.name, max_side=size)
    styles = [resize_short(decode(p), STYLE_SIZE) for p in paintings]
    return pil_to_tensor(tensor_to_pil(stylizer.stylize(content, styles, alpha, **controls)))


def test_a_good_pair_gives_the_stylized_image(stylizer, uploads_dir):
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        r = post(client, alpha=0.7, size=64)
        jpeg = post(client, alpha=0.7, size=64, format="jpeg")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    out = decode(r.content)
    assert out.shape == (3, 48, 64)  # 72x96 with the long side shrunk to 64
    assert (out - expected(stylizer, PHOTO, [PAINTING], 0.7, 64)).abs().max() <= 1 / 255
    assert (out - limit_long(decode(PHOTO), 64)).abs().mean() > 0.05  # stylized, not the photo
    assert jpeg.headers["content-type"] == "image/jpeg" and decode(jpeg.content).shape == (3, 48, 64)
    assert list(uploads_dir.iterdir()) == []  # uploads live in a temporary folder, removed after


def test_second_painting_colour_preservation_and_refinement(stylizer, uploads_dir):
    files = {
        "content": ("photo.png", PHOTO),
        "style": ("painting.png", PAINTING),
        "style2": ("second.png", PAINTING2),
    }
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        mix = post(client, files, style2_weight=0.25, size=64)
        only_second = post(client, files, style2_weight=1, size=64)
        kept = post(client, files, style2_weight=0.25, size=64, preserve_color="luminance")
        refined = post(client, files, style2_weight=0.25, size=64, refine=5)
    both = [PAINTING, PAINTING2]
    want_mix = expected(stylizer, PHOTO, both, 1.0, 64, weights=[0.75, 0.25])
    assert (decode(mix.content) - want_mix).abs().max() <= 1 / 255
    assert (decode(only_second.content) - expected(stylizer, PHOTO, [PAINTING2], 1.0, 64)).abs().max() <= 1 / 255
    want_kept = expected(stylizer, PHOTO, both, 1.0, 64, weights=[0.75, 0.25], preserve_color="luminance")
    assert (decode(kept.content) - want_kept).abs().max() <= 1 / 255
    assert (want_kept - want_mix).abs().mean() > 0.01
    want_refined = expected(stylizer, PHOTO, both, 1.0, 64, weights=[0.75, 0.25], refine=5)
    assert (decode(refined.content) - want_refined).abs().max() <= 2 / 255
    assert (want_refined - want_mix).abs().mean() > 0.005


def test_each_painting_is_encoded_once(stylizer, monkeypatch, uploads_dir):
    calls = []
    real = stylizer.style_stats
    monkeypatch.setattr(stylizer, "style_stats", lambda image: calls.append(image.shape) or real(image))
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        for alpha in (1.0, 0.5, 0.2):
            assert post(client, alpha=alpha, size=64).status_code == 200
        assert post(client, {"content": ("a.png", PHOTO), "style": ("b.png", PAINTING2)}, size=64).status_code == 200
    assert len(calls) == 2


def truncated_jpeg() -> bytes:
    data = jpeg_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("field", "data", "reason"),
    [
        ("content", b"plain text", r"photo \(upload.jpg\): cannot read image: not a known image format"),
        ("content", truncated_jpeg(), r"photo \(upload.jpg\): cannot read image, truncated or corrupt"),
        ("content", b"", r"photo \(upload.jpg\): empty file \(0 bytes\)"),
        ("style", png_bytes(8, 40, 0), r"painting \(upload.jpg\): image is 40x8, smaller than the minimum side of 16"),
        ("style2", b"", r"second painting \(upload.jpg\): empty file"),
    ],
)
def test_a_bad_upload_gets_400_with_the_reason(stylizer, uploads_dir, field, data, reason):
    files = {"content": ("photo.png", PHOTO), "style": ("painting.png", PAINTING), field: ("upload.jpg", data)}
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        r = post(client, files, size=64)
    assert r.status_code == 400
    assert re.fullmatch(reason + ".*", r.json()["error"]), r.json()
    assert list(uploads_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"alpha": "2"}, "alpha must be a number from 0 to 1, got '2'"),
        ({"alpha": "lots"}, "alpha must be a number from 0 to 1, got 'lots'"),
        ({"size": "8"}, "size must be a number from 64 to 1024, got '8'"),
        ({"size": "100.7"}, "size must be a whole number of px from 64 to 1024, got '100.7'"),
        ({"preserve_color": "sepia"}, "preserve_color must be one of off, coral, luminance, got 'sepia'"),
        ({"format": "gif"}, "format must be one of png, jpeg, got 'gif'"),
        ({"refine": "100"}, "refine must be one of 0, 5, 10, 20, got '100'"),
    ],
)
def test_bad_settings_get_400_with_the_reason(stylizer, fields, reason):
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        r = post(client, **fields)
    assert (r.status_code, r.json()) == (400, {"error": reason})


def test_a_missing_painting_gets_400(stylizer):
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        r = post(client, {"content": ("photo.png", PHOTO)})
        text = client.post("/api/stylize", data={"content": "x", "style": "y"})
    assert (r.status_code, r.json()) == (400, {"error": "no painting: send it as the file field 'style'"})
    assert (text.status_code, text.json()) == (400, {"error": "content must be a file upload, not a text field"})


def test_uploads_over_the_limits_get_413(stylizer, uploads_dir):
    with TestClient(create_app(stylizer, Limits(upload_mb=0.02)), base_url=LOCAL) as client:
        big = post(client, {"content": ("photo.png", png_bytes(120, 120, 0)), "style": ("painting.png", PAINTING)})
        chunked = client.post("/api/stylize", content=iter([PHOTO]), headers={"content-type": "multipart/form-data"})
    assert big.status_code == 413
    assert re.fullmatch(r"the upload is 0\.0\d+ MB, over the limit of 0.02 MB", big.json()["error"])
    assert chunked.status_code == 411  # no Content-Length: the size could not be checked before reading
    with TestClient(create_app(stylizer, Limits(megapixels=0.01)), base_url=LOCAL) as client:  # the photo has 0.007
        r = post(client, {"content": ("photo.png", PHOTO), "style": ("painting.png", png_bytes(120, 120, 0))})
    assert r.status_code == 413
    reason = "painting (painting.png): image is 120x120 (0 MP), over the limit of 0.01 MP (this server's limit: choose"
    assert r.json()["error"] == reason + " a smaller image)"  # the page's words, not the command line's options
    assert list(uploads_dir.iterdir()) == []


def test_an_internal_error_answers_its_reason_without_a_traceback(stylizer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the decoder fell over")

    monkeypatch.setattr(stylizer, "stylize", broken)
    with TestClient(create_app(stylizer), base_url=LOCAL, raise_server_exceptions=False) as client:
        r = post(client, size=64)
    assert (r.status_code, r.json()) == (500, {"error": "internal error (RuntimeError: the decoder fell over)"})


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_queue_answers_503_and_the_waiting_request_is_served(stylizer, monkeypatch):
    """Queue of 1: the first request is held inside stylize, the second waits, the third is refused."""
    started, gate = threading.Event(), threading.Event()
    real = stylizer.stylize

    def held(*args, **kwargs):
        started.set()
        assert gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(stylizer, "stylize", held)
    answers = {}
    with TestClient(create_app(stylizer, Limits(queue=1)), base_url=LOCAL) as client:
        threads = [threading.Thread(target=lambda n=n: answers.update({n: post(client, size=64)})) for n in (1, 2)]
        threads[0].start()
        assert started.wait(30)
        threads[1].start()
        wait_until(lambda: client.app.state.queue.waiting() == 1)
        refused = post(client, size=64)
        gate.set()
        for t in threads:
            t.join(30)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"].startswith("the server is busy with other requests; try again in")
    assert answers[1].status_code == answers[2].status_code == 200


def test_the_page_is_served_with_nothing_from_another_host(stylizer):
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        page = client.get("/")
        assets = {p.name: client.get(f"/static/{p.name}") for p in STATIC.iterdir()}
        info = client.get("/api/info").json()
        example = client.get("/examples/content/chelsea.jpg")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for name, r in {"/": page, **assets}.items():
        assert r.status_code == 200, name
        text = r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not an address
        assert not re.search(r"https?:|[\"'(]//", text), f"{name} refers to another host"
    assert {"index.html", "app.js", "style.css", "icon.svg"} <= set(assets)
    assert "chelsea.jpg" in info["examples"]["content"] and "strokes.jpg" in info["examples"]["style"]
    assert example.status_code == 200 and example.content == (ROOT / "examples/content/chelsea.jpg").read_bytes()


def test_only_loopback_addresses_go_without_a_warning():
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert exposure_warning(host) is None
    assert "other machines" in exposure_warning("0.0.0.0")
    assert "other machines" in exposure_warning("192.168.1.10")


def test_the_command_line_refuses_bad_limits_and_a_busy_port(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--queue", "0"])
    assert info.value.code == 2 and "--queue must be at least 1" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(SystemExit) as info:
        main(["--port", str(taken.getsockname()[1])])
    assert info.value.code == 2 and "cannot listen on 127.0.0.1:" in capsys.readouterr().err


def test_the_command_line_starts_a_server_and_prints_its_address():
    cmd = [sys.executable, "-m", "stylize.web", "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(url.group() + "/", timeout=30) as r:
            assert r.status == 200 and b"<title>stylize</title>" in r.read()
    finally:
        proc.terminate()
        proc.wait(30)
    assert not proc.stderr.read()  # no warning for the default, loopback address


def test_a_server_on_every_interface_prints_an_address_a_browser_can_open():
    with socket.create_server(("0.0.0.0", 0)) as sock:
        assert address(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}"
    with socket.create_server(("127.0.0.1", 0)) as sock:
        assert address(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_other_sites_are_refused_and_every_answer_forbids_framing_and_sniffing(stylizer):
    with TestClient(create_app(stylizer, names={"localhost", "studio"}), base_url=LOCAL) as client:
        for path in ("/", "/api/info", "/static/app.js"):
            r = client.get(path)
            assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "default-src 'self'" in client.get("/").headers["content-security-policy"]  # the page's own policy
        # DNS rebinding: another site's name pointed at this computer reaches it with that name as Host
        r = client.get("/api/info", headers={"host": "evil.example:8000"})
        assert r.status_code == 403 and "'evil.example:8000' is not this server's" in r.json()["error"]
        assert r.headers["x-content-type-options"] == "nosniff"
        for host in ("localhost:8000", "studio", "[::1]:8000", "192.168.1.20:8000"):  # its names and addresses
            assert client.get("/api/info", headers={"host": host}).status_code == 200, host
        # a page of another site posting a job: its Origin, or the browser's Sec-Fetch-Site, gives it away
        r = client.post("/api/stylize", headers={"origin": "https://evil.example"}, files={"content": ("a.png", PHOTO)})
        assert r.status_code == 403 and "another site (https://evil.example)" in r.json()["error"]
        r = client.post("/api/stylize", headers={"sec-fetch-site": "cross-site"}, files={"content": ("a.png", PHOTO)})
        assert r.status_code == 403
        assert post(client).status_code == 200  # the page's own posts (no Origin from the test client)
        r = client.post("/api/stylize", headers={"origin": LOCAL}, files={"content": ("p.png", PHOTO),
                                                                           "style": ("s.png", PAINTING)})  # fmt: skip
        assert r.status_code == 200


def test_retry_after_counts_the_jobs_waiting_at_their_running_mean_time():
    q = DeviceQueue(4)
    try:
        release = threading.Event()
        for seconds in (0.05, 0.15):  # two jobs: the mean follows them (the first replaces the guess)
            q.add(lambda check, s=seconds: time.sleep(s))
        while q.done < 2:
            time.sleep(0.01)
        assert q.mean == pytest.approx(0.7 * 0.05 + 0.3 * 0.15, abs=0.03)
        q.mean = 10.0  # a slow server: one job running, three waiting
        q.add(lambda check: release.wait())
        while q.started is None:
            time.sleep(0.01)
        for _ in range(3):
            q.add(lambda check: None)
        assert q.retry_after() in (40, 39)  # about 10 s left of the running one, 3 x 10 s waiting
    finally:
        release.set()
        q.close()


def test_a_client_that_drops_mid_upload_leaves_one_line_in_the_log(stylizer, capfd, caplog):
    with serving(create_app(stylizer)) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        part = b'--b\r\nContent-Disposition: form-data; name="content"; filename="p.png"\r\n\r\n' + PHOTO[:100]
        head = f"POST /api/stylize HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n"
        head += "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        with socket.create_connection((host, int(port))) as client:
            client.sendall(head.encode() + part)
            time.sleep(0.2)  # the server is reading the upload: then the client goes
        err, deadline = "", time.time() + 30
        while not ("Traceback" in err or "went away" in caplog.text) and time.time() < deadline:
            time.sleep(0.1)
            err += capfd.readouterr().err
    err += capfd.readouterr().err
    assert "Traceback" not in err, err  # uvicorn's log of an exception in the app
    assert [r.getMessage() for r in caplog.records if r.name == "stylize.web"] == [
        "a client went away during its upload (127.0.0.1)"
    ]


def raw_post(url: str, size: int = 64) -> socket.socket:
    """Send a whole stylize request from a plain socket, left open: the test closes it to leave."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    parts = [(f'name="{f}"; filename="{f}.png"', data) for f, data in (("content", PHOTO), ("style", PAINTING))]
    parts.append(('name="size"', str(size).encode()))
    head = b"--b\r\nContent-Disposition: form-data; "
    body = b"".join(head + d.encode() + b"\r\n\r\n" + v + b"\r\n" for d, v in parts)
    body += b"--b--\r\n"
    head = f"POST /api/stylize HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
    head += "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    client = socket.create_connection((host, int(port)))
    client.sendall(head.encode() + body)
    return client


def test_abandoned_requests_leave_the_queue_and_a_running_one_stops(stylizer, monkeypatch, caplog):
    """Real clients that hang up: two waiting ones leave the queue at once (never run), the running
    one stops at its next stage (its picture is never decoded), and the next request is served."""
    gate, calls, decoded = threading.Event(), [], []
    real_stylize, real_decode = stylizer.stylize, stylizer.decode

    def held(*args, **kwargs):  # the first job waits here, after its painting was encoded
        calls.append(1)
        assert gate.wait(30)
        return real_stylize(*args, **kwargs)

    monkeypatch.setattr(stylizer, "stylize", held)
    monkeypatch.setattr(stylizer, "decode", lambda *a, **kw: decoded.append(1) or real_decode(*a, **kw))
    caplog.set_level("INFO", "stylize.web")
    gone = "went away before its picture was ready"
    app = create_app(stylizer, Limits(queue=2))
    with serving(app) as url:
        running = raw_post(url)
        wait_until(lambda: calls)
        waiting = [raw_post(url), raw_post(url)]
        wait_until(lambda: app.state.queue.waiting() == 2)
        for client in waiting:
            client.close()
        wait_until(lambda: app.state.queue.waiting() == 0)  # out of the queue while the first still runs
        assert caplog.text.count(gone) == 2
        running.close()
        wait_until(lambda: app.state.queue.running.gone.is_set())
        gate.set()  # the first job goes on, and stops once its photo is encoded
        wait_until(lambda: caplog.text.count(gone) == 3)
        with raw_post(url) as served:
            answer = http.client.HTTPResponse(served)
            answer.begin()
            assert answer.status == 200 and decode(answer.read()).shape[-2:] == (48, 64)
    assert len(calls) == 2 and len(decoded) == 1  # the waiting ones never ran; the running one never decoded


def test_a_photo_is_shrunk_to_the_asked_size_as_it_is_decoded_and_memory_goes_back(stylizer, monkeypatch):
    assert Limits().megapixels == 40  # below the command line's 100: an upload costs the server its decoding
    sides, trims = [], []
    real = web.load_image
    monkeypatch.setattr(web, "load_image", lambda path, **kw: sides.append(kw.get("max_side")) or real(path, **kw))
    monkeypatch.setattr(web, "release_memory", lambda: trims.append(1))
    with TestClient(create_app(stylizer), base_url=LOCAL) as client:
        r = post(client, size=64)
        assert r.status_code == 200 and decode(r.content).shape[-2:] == (48, 64)
        assert post(client, size=80).status_code == 200
    assert sides[0] == 64 and 80 in sides  # the photo decoded at the size asked, not at its own
    assert len(trims) == 2  # freed memory handed back after each job
