"""HTTP front of the emulator: auth, the connection limit, faults, recording.

Standard-library ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive,
one thread per connection.  Each request is, in order:

1. counted as in flight (from headers read to response written); above
   ``emu.max_connections`` it gets 429 "Too Many Requests";
2. authenticated (Basic with any user and the key as password, or
   ``Bearer``/``OAuth``/``apikey`` + key);
3. possibly faulted (``emu.faults``; ``/ping`` is exempt unless asked);
4. dispatched to :func:`.api.dispatch` and answered as JSON or problem+json,
   always with an ``X-Request-Id`` that equals the problem ``instance``.

Batch result archives are served under ``/_emulator/batch-results/`` without
auth, limit or faults, like the real pre-signed download URL.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import socket
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import orjson

from civimc_sandbox.emulator import problems as P
from civimc_sandbox.emulator.api import dispatch
from civimc_sandbox.emulator.batches import RESULTS_PREFIX
from civimc_sandbox.emulator.state import Emulator, RecordedRequest

API_PREFIX = "/3.0"
JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json; charset=utf-8"


def _key_from(header: str | None) -> str | None:
    """The API key carried by an Authorization header, or None if there is none."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    if scheme in ("bearer", "oauth", "apikey"):
        return value
    return ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openresty"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this

    server: _Server

    def setup(self):
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format, *args):  # quiet: tests read emu.requests instead
        pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # --- request plumbing ---------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str | None, rid: str,
              extra: dict | None = None, cut: int | None = None) -> None:
        """Answer; with `cut`, only that many bytes of the body follow the headers (a
        connection lost mid-answer)."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = [f"HTTP/1.1 {status} {phrase}", "Server: openresty",
                f"Date: {self.date_time_string(self.server.emu.now())}", f"X-Request-Id: {rid}",
                f"Content-Length: {len(body)}", "Vary: Accept-Encoding"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        for k, v in (extra or {}).items():
            head.append(f"{k}: {v}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += body if cut is None else body[:cut]
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- main -----------------------------------------------------------------
    def _handle(self):
        emu: Emulator = self.server.emu
        started = time.perf_counter()
        rid = self._rid = str(uuid.uuid4())
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        method = self.command
        if path.startswith(RESULTS_PREFIX):
            self._read_body()
            return self._serve_archive(emu, method, path, query, rid, started)
        gated = emu._enter()
        try:
            body = self._read_body()
            status, payload, ctype, headers, resp_obj, req_obj, fault = self._process(
                emu, method, path, query, body, gated)
            if req_obj is None and body and emu.record_bodies:  # refused before dispatch
                with contextlib.suppress(orjson.JSONDecodeError):
                    req_obj = orjson.loads(body)
            # Recorded before answering, so a client that got its response can rely
            # on finding the request in emu.requests.
            self._record(emu, method, path, query, req_obj, status, resp_obj, rid, fault, started)
            if fault in ("drop", "drop-after"):
                self._drop()
            else:
                if fault == "garbled":
                    payload = payload[:len(payload) // 2]
                if (emu.gzip and payload and ctype and "gzip" in
                        (self.headers.get("Accept-Encoding") or "")):
                    payload = gzip.compress(payload, 1)
                    headers = {**headers, "Content-Encoding": "gzip"}
                self._send(status, payload, ctype, rid, headers,
                           cut=len(payload) // 2 if fault == "cut" else None)
                if fault == "cut":
                    self._drop()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        finally:
            emu._leave()

    def _process(self, emu: Emulator, method, path, query, body, gated):
        """Returns (status, payload bytes, content type, headers, response obj,
        request obj, fault kind)."""
        req_obj = None
        limit = emu.max_connections
        if limit is not None and gated > limit:
            return self._problem(P.too_many_requests(limit), "limit")
        key = _key_from(self.headers.get("Authorization"))
        if key is None:
            return self._problem(P.api_key_missing())
        if key != emu.api_key:
            # The right account's key sent to another data centre's host.
            secret, _, dc = key.rpartition("-")
            if secret and secret == emu.api_key.rpartition("-")[0] and dc != emu.dc:
                return self._problem(P.wrong_datacenter())
            return self._problem(P.api_key_invalid())
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return self._problem(P.not_found())
        api_path = path[len(API_PREFIX):] or "/"
        kind, delay = emu.faults.decide(method, api_path)
        if delay:
            time.sleep(delay)
        if kind == "drop":
            return 0, b"", None, {}, None, None, "drop"
        # "drop-after" falls through: the call is handled, then the answer is dropped below.
        if kind == "echo-key":
            return self._problem(P.ApiError(400, "Invalid Resource",
                                            f"The request made with API key {key} did not "
                                            "validate."), kind)
        if kind in ("403", "429-bare"):
            return int(kind[:3]), b"", None, {}, None, None, kind
        if kind in ("429", "500", "503"):
            err = {"429": P.too_many_requests(limit or 10), "500": P.internal_error(),
                   "503": P.service_unavailable()}[kind]
            return self._problem(err, kind)
        resp = dispatch(emu, method, api_path, query, body, self.server.base_url,
                        request_id=self._rid)
        req_obj = resp.request_json
        payload = b"" if resp.body is None else orjson.dumps(resp.body)
        ctype = None if resp.body is None else (PROBLEM_TYPE if resp.problem else JSON_TYPE)
        body = resp.body
        if resp.fragments and emu.record_bodies and emu.record_requests:
            body = orjson.loads(payload)  # the log holds plain JSON, not cached fragments
        return resp.status, payload, ctype, resp.headers, body, req_obj, kind

    def _problem(self, err: P.ApiError, fault: str | None = None):
        doc = err.document(self._rid)
        return err.status, orjson.dumps(doc), PROBLEM_TYPE, dict(err.headers), doc, None, fault

    def _serve_archive(self, emu, method, path, query, rid, started):
        batch_id = path[len(RESULTS_PREFIX):].removesuffix(".tar.gz")
        data = emu.batches.archive_bytes(batch_id) if method == "GET" else None
        self._record(emu, method, path, query, None, 200 if data is not None else 404,
                     None, rid, None, started)
        try:
            if data is None:
                self._send(404, b"Not Found", "text/plain", rid)
            else:
                self._send(200, data, "application/x-gzip", rid)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _record(self, emu, method, path, query, req_obj, status, resp_obj, rid, fault, started):
        if not emu.record_requests:
            return
        keep = emu.record_bodies
        emu.requests.append(RecordedRequest(
            method, path, query, req_obj if keep else None, status,
            resp_obj if keep else None, rid, fault, time.perf_counter() - started))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, emu: Emulator):
        self.emu = emu
        self.base_url = ""
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def track(self, conn, alive: bool) -> None:
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address):  # client went away: not our problem
        pass


class _Server6(_Server):
    address_family = socket.AF_INET6


class EmulatorServer:
    """Serve an :class:`~.state.Emulator` over HTTP.

    ``EmulatorServer(emu, host, port=0)`` binds at once (port 0 = a free
    port), so ``base_url`` (``http://host:port/3.0``) is known before
    ``start()`` (background daemon thread) or ``serve_forever()`` (foreground).
    Usable as a context manager.
    """

    def __init__(self, emu: Emulator, host: str = "127.0.0.1", port: int = 0):
        self.emu = emu
        cls = _Server6 if ":" in host else _Server
        self.httpd = cls((host, port), emu)
        self.host = host
        self.port = self.httpd.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.origin = f"http://{shown}:{self.port}"
        self.base_url = self.origin + API_PREFIX
        self.httpd.base_url = self.base_url
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self.emu.base_url = self.base_url
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"mailchimp-emulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.emu.base_url = self.base_url
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.httpd.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.close_all()
        self.httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
