"""The drawing board's web server (``pyfill board``): serves the page, the legend, the shipped
templates, and runs one :class:`pyfill.Engine` for ``POST /api/draw``.

Standard library only (``http.server``) plus Pillow. Every request is validated; a bad one gets
HTTP 400 (413 for an oversized body, 404 for an unknown path, 403 for a foreign host, origin or
a missing token, 503 when busy) with ``{"error": message}``.

Security: the server listens on the loopback address unless told otherwise (and warns when it
is not). The ``Host`` header must name this machine (an IP address, ``localhost``, or a name
given in ``allowed_hosts``), so a web page on another domain that re-binds its name to 127.0.0.1
cannot drive it; a ``POST`` whose ``Origin`` is another site is refused, draws must be sent as
``application/json`` (which browsers never send across origins without a CORS pre-flight, and
no CORS header is ever answered); static files are looked up by name in one folder. Each
request (line, headers and body) must arrive within ``REQUEST_TIMEOUT`` seconds; at most ``MAX_PENDING``
draws hold their bodies in memory at once, and a draw that waits longer than ``DRAW_WAIT``
seconds for the model gets 503. With ``token`` set (``pyfill board --token``), every request must
carry it: ``?token=...`` in the printed URL (which sets a same-site cookie) or the header
``Authorization: token ...``.

Routes:
    GET  /                          the page
    GET  /static/<file>             the page's script and style
    GET  /api/labels                {"labels": [{"index", "name", "colour": [r, g, b]}],
                                     "size": [H, W] (the model's size: the page's default canvas)}
    GET  /api/templates             {"templates": [name, ...]}
    GET  /api/templates/<name>.png  a template as a colour-coded label PNG
    POST /api/draw                  {"labels": b64 PNG, "strokes": b64 PNG (optional),
                                     "occupancy": b64 PNG (optional)}
                                    -> {"image": b64 PNG, "width", "height", "seconds"}
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import ipaddress
import json
import secrets
import socket
import sys
import threading
import time
import urllib.parse
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pyfill.engine import Engine
from pyfill.tasks import generate, generate_engine, legend

BOARD_DIR = Path(__file__).resolve().parent
STATIC_DIR = BOARD_DIR / "static"
TEMPLATE_DIR = BOARD_DIR / "templates"
MIN_SIDE, MAX_SIDE = 16, 1024
MAX_BODY = 16 * 1024 * 1024
REQUEST_TIMEOUT = 30.0  # seconds a connection may take to send a request line, headers or body
MAX_PENDING = 8  # draws whose bodies are held in memory at once
DRAW_WAIT = 60.0  # seconds a draw waits for the model before 503
TOKEN_COOKIE = "pyfill_board_token"
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png"}
_DRAW_FIELDS = {"labels", "strokes", "occupancy"}


class BadRequest(ValueError):
    """A request the board refuses; the message goes back to the client."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def decode_png(field: str, data: Any) -> Image.Image:
    """A base64 PNG (optionally a ``data:image/png;base64,`` URL) -> a loaded PIL image whose
    sides are within [MIN_SIDE, MAX_SIDE]."""
    if not isinstance(data, str):
        raise BadRequest(f"{field}: expected a base64-encoded PNG string")
    if data.startswith("data:"):
        head, _, data = data.partition(",")
        if head != "data:image/png;base64":
            raise BadRequest(f"{field}: expected a data:image/png;base64 URL, got {head[:40]!r}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{field}: not valid base64 ({exc})") from exc
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadRequest(f"{field}: not a PNG image")
    try:
        im = Image.open(io.BytesIO(raw))
        w, h = im.size
        if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
            raise BadRequest(f"{field}: image is {w} x {h}; each side must be {MIN_SIDE}..{MAX_SIDE} pixels")
        im.load()
    except BadRequest:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRequest(f"{field}: unreadable PNG ({exc})") from exc
    return im


def label_array(im: Image.Image) -> np.ndarray:
    """A label PNG -> uint8 (H, W) class indices (gray PNG) or (H, W, 3) legend colours."""
    if im.mode == "L":
        return np.asarray(im).copy()
    if im.mode in ("RGB", "RGBA", "P", "LA"):
        return np.asarray(im.convert("RGB")).copy()
    raise BadRequest(f"labels: unsupported PNG mode {im.mode} (8-bit gray indices or RGB legend colours)")


def stroke_arrays(strokes: Image.Image, occupancy: Image.Image | None) -> tuple[np.ndarray, np.ndarray]:
    """Stroke PNG (+ optional occupancy PNG) -> uint8 (H, W, 3) colours and bool (H, W) occupancy.

    Occupancy: the occupancy image's non-zero pixels when given, else the stroke image's alpha
    (RGBA), else any non-zero channel."""
    rgba = np.asarray(strokes.convert("RGBA"))
    rgb = rgba[..., :3].copy()
    if occupancy is not None:
        if occupancy.size != strokes.size:
            raise BadRequest(f"occupancy is {occupancy.size[0]} x {occupancy.size[1]} but strokes are "
                             f"{strokes.size[0]} x {strokes.size[1]}")
        occ = np.asarray(occupancy.convert("L")) > 0
    elif "A" in strokes.getbands() or (strokes.mode == "P" and "transparency" in strokes.info):
        occ = rgba[..., 3] > 0
    else:
        occ = rgb.max(axis=-1) > 0
    return rgb, occ


def parse_draw(body: dict[str, Any]) -> dict[str, Any]:
    """A draw request's JSON object -> the arguments of :func:`pyfill.tasks.generate`: labels
    (H, W) or (H, W, 3) uint8, and strokes (H, W, 3) uint8 with occupancy (H, W) bool when
    given. Raises BadRequest naming the problem."""
    unknown = sorted(str(k)[:40] for k in set(body) - _DRAW_FIELDS)
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; a draw takes {sorted(_DRAW_FIELDS)}")
    if "labels" not in body:
        raise BadRequest("missing field 'labels' (a base64 PNG label map)")
    labels_im = decode_png("labels", body["labels"])
    inputs: dict[str, Any] = {"labels": label_array(labels_im)}
    if body.get("strokes") is not None:
        strokes_im = decode_png("strokes", body["strokes"])
        if strokes_im.size != labels_im.size:
            raise BadRequest(f"strokes are {strokes_im.size[0]} x {strokes_im.size[1]} but labels are "
                             f"{labels_im.size[0]} x {labels_im.size[1]}")
        occ_im = decode_png("occupancy", body["occupancy"]) if body.get("occupancy") is not None else None
        inputs["strokes"], inputs["occupancy"] = stroke_arrays(strokes_im, occ_im)
    elif body.get("occupancy") is not None:
        raise BadRequest("occupancy goes with strokes")
    return inputs


def png_base64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class BoardServer(ThreadingHTTPServer):
    """An HTTP server that owns one Engine; draw calls are serialised by a lock.

    ``allowed_hosts``: host names besides IP addresses and ``localhost`` that the ``Host`` header
    may carry (e.g. this machine's name when it serves the network). ``token``: a secret every
    request must carry (None: no token).
    """

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], engine: Engine, allowed_hosts: tuple[str, ...] = (),
                 token: str | None = None) -> None:
        entries = legend(engine)
        if not entries:
            raise ValueError(f"{engine.path.name}: the drawing board needs a model whose labels have legend colours")
        self.engine = engine
        self.palette = np.asarray([e.colour for e in entries], np.uint8)
        self.legend = [{"index": e.index, "name": e.name, "colour": list(e.colour)} for e in entries]
        self.templates = sorted(p.stem for p in TEMPLATE_DIR.glob("*.png"))
        self.lock = threading.Lock()
        self.pending = threading.BoundedSemaphore(MAX_PENDING)
        self.allowed_hosts = {"localhost", *(h.lower() for h in allowed_hosts)}
        self.token = token
        self.refused = 0  # requests answered 4xx/5xx, for the operator's figures
        self.count_lock = threading.Lock()
        super().__init__(address, BoardHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}/"

    def draw(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = parse_draw(body)
        if not self.lock.acquire(timeout=DRAW_WAIT):
            raise BadRequest(f"the board is busy: no draw slot within {DRAW_WAIT:g} s; try again",
                             HTTPStatus.SERVICE_UNAVAILABLE)
        try:
            start = time.perf_counter()
            try:
                image = generate(**inputs, model=self.engine)
            except (ValueError, TypeError) as exc:
                raise BadRequest(str(exc)) from exc
            seconds = time.perf_counter() - start
        finally:
            self.lock.release()
        return {"image": png_base64(image), "width": int(image.shape[1]), "height": int(image.shape[0]),
                "seconds": round(seconds, 4)}

    def template_png(self, name: str) -> bytes:
        if name not in self.templates:
            raise BadRequest(f"no template named {name!r}; available: {self.templates}", HTTPStatus.NOT_FOUND)
        index = np.asarray(Image.open(TEMPLATE_DIR / f"{name}.png"))
        buf = io.BytesIO()
        Image.fromarray(self.palette[np.clip(index, 0, len(self.palette) - 1)]).save(buf, format="PNG")
        return buf.getvalue()


class BoardHandler(BaseHTTPRequestHandler):
    server: BoardServer
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT  # socket reads (request line, headers, body) time out

    def handle_one_request(self) -> None:
        # The whole request (line, headers, body) must arrive within ``timeout`` seconds, not
        # just each read: a client dripping one byte at a time is cut off. The clock stops once
        # the request is read (a draw may then wait for the model).
        self._clock = threading.Timer(self.timeout or REQUEST_TIMEOUT, self._expire)
        self._clock.daemon = True
        self._clock.start()
        try:
            super().handle_one_request()
        finally:
            self._clock.cancel()

    def _expire(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        sys.stderr.write(f"board {self.address_string()} {format % args}\n")

    def send_response(self, code: int, message: str | None = None) -> None:
        if code >= 400:
            with self.server.count_lock:
                self.server.refused += 1
        super().send_response(code, message)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, cookie: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

    def _guarded(self, route: Any) -> None:
        try:
            self._check_caller()
            route()
        except BadRequest as exc:
            self._json(exc.status, {"error": str(exc)})
        except (TimeoutError, ConnectionError) as exc:  # a client too slow, or gone: drop it
            self.close_connection = True
            self.log_error("connection dropped: %r", exc)
        except Exception as exc:  # noqa: BLE001 - the server answers every request and keeps running
            self.log_error("internal error: %r", exc)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {exc}"})

    def _check_caller(self) -> None:
        """Refuse (403) a request whose Host is not this machine (DNS rebinding), whose Origin is
        another site, or that lacks the token."""
        host_header = self.headers.get("Host")
        if not host_header:
            raise BadRequest("a Host header is required", HTTPStatus.FORBIDDEN)
        host = _host_name(host_header)
        if not (_is_ip(host) or host in self.server.allowed_hosts):
            raise BadRequest(f"host {host!r} is not this board's address; open it by IP address or localhost "
                             "(pyfill board --allow-host NAME allows another name)", HTTPStatus.FORBIDDEN)
        origin = self.headers.get("Origin")
        if origin is not None and origin != "null":
            parsed = urllib.parse.urlsplit(origin)
            if parsed.scheme != "http" or (parsed.netloc or "").lower() != host_header.strip().lower():
                raise BadRequest(f"requests from origin {origin!r} are not allowed", HTTPStatus.FORBIDDEN)
        elif origin == "null" and self.command == "POST":
            raise BadRequest("requests from an opaque origin are not allowed", HTTPStatus.FORBIDDEN)
        token = self.server.token
        if token is None:
            return
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        given = [*query.get("token", [])]
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("token "):
            given.append(auth[6:].strip())
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE:
                given.append(value)
        if not any(hmac.compare_digest(g.encode(), token.encode()) for g in given):
            raise BadRequest("a token is required: open the URL the board printed at start", HTTPStatus.FORBIDDEN)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._clock.cancel()
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._guarded(self._post)

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path[len("/static/"):])
        elif path == "/api/labels":
            fixed = self.server.engine.manifest.size.fixed
            self._json(HTTPStatus.OK, {"labels": self.server.legend, "size": list(fixed) if fixed else [128, 128]})
        elif path == "/api/templates":
            self._json(HTTPStatus.OK, {"templates": self.server.templates})
        elif path.startswith("/api/templates/") and path.endswith(".png"):
            name = path[len("/api/templates/"):-len(".png")]
            self._send(HTTPStatus.OK, self.server.template_png(name), "image/png")
        else:
            raise BadRequest(f"no such page: {path}", HTTPStatus.NOT_FOUND)

    def _static(self, name: str) -> None:
        files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}
        if name not in files:
            raise BadRequest(f"no such file: {name[:200]}", HTTPStatus.NOT_FOUND)
        p = files[name]
        cookie = None
        if self.server.token is not None and name == "index.html":
            cookie = f"{TOKEN_COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(HTTPStatus.OK, p.read_bytes(), _CONTENT_TYPES.get(p.suffix, "application/octet-stream"), cookie)

    def _post(self) -> None:
        if self.path.split("?", 1)[0] != "/api/draw":
            raise BadRequest(f"no such endpoint: POST {self.path}", HTTPStatus.NOT_FOUND)
        length = self.headers.get("Content-Length")
        if length is None or not length.isascii() or not length.isdigit():
            self.close_connection = True
            raise BadRequest("a Content-Length header is required")
        if int(length) > MAX_BODY:
            self.close_connection = True
            raise BadRequest(f"request body of {int(length)} bytes exceeds the {MAX_BODY}-byte limit",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self.close_connection = True
            raise BadRequest(f"a draw is sent as Content-Type application/json, got {content_type or 'none'!r}",
                             HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        if not self.server.pending.acquire(timeout=REQUEST_TIMEOUT):
            self.close_connection = True
            raise BadRequest("the board is busy; try again", HTTPStatus.SERVICE_UNAVAILABLE)
        try:
            raw = self.rfile.read(int(length))
            self._clock.cancel()
            if len(raw) < int(length):
                self.close_connection = True
                raise BadRequest(f"the body ended after {len(raw)} of {int(length)} bytes")
            self._json(HTTPStatus.OK, self.server.draw(parse_body(raw)))
        finally:
            self.server.pending.release()


def parse_body(raw: bytes) -> dict[str, Any]:
    """A draw request's body -> its JSON object; BadRequest for anything else."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise BadRequest("body is not valid JSON (nested too deeply)") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def make_server(host: str = "127.0.0.1", port: int = 8765, model: str = "generate",
                backend: str = "auto", allowed_hosts: tuple[str, ...] = (), token: str | None = None) -> BoardServer:
    """A board server bound to ``host:port`` (port 0: any free port), not yet serving.
    ``model``: a shipped model's name or a model file. A host other than the loopback (anyone on
    the network can then draw) gives a warning. See :class:`BoardServer` for ``allowed_hosts``
    and ``token``."""
    if not is_loopback(host):
        warnings.warn(f"the board listens on {host!r}, reachable from other machines: anyone who can reach "
                      "it can use this model (pass --token to require a secret)", stacklevel=2)
    return BoardServer((host, port), generate_engine(model, backend=backend), allowed_hosts, token)


def new_token() -> str:
    """A random URL-safe token (32 bytes of entropy)."""
    return secrets.token_urlsafe(32)


def serve(host: str = "127.0.0.1", port: int = 8765, model: str = "generate", backend: str = "auto",
          allowed_hosts: tuple[str, ...] = (), token: str | None = None) -> None:
    """Run the board until interrupted, printing its address (with ``?token=`` when set)."""
    server = make_server(host, port, model, backend, allowed_hosts, token)
    address = server.url + (f"?token={token}" if token else "")
    print(f"pyfill board: serving on {address} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
