"""Local stand-ins for cloud storage, recording every request: a moto S3 server (read
through s3fs) and a static HTTP server with Range support (read through fsspec's HTTP
filesystem), both on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Request:
    method: str  # S3 API call (get_object, head_object, ...) or HTTP verb
    key: str
    byte_range: str | None  # "bytes=a-b" or the suffix form "bytes=-n"

    @property
    def n_bytes(self) -> int | None:
        """Bytes asked for by a ranged request (None: the whole object)."""
        if not self.byte_range:
            return None
        start, _, end = self.byte_range.removeprefix("bytes=").partition("-")
        return int(end) if not start else int(end) - int(start) + 1


@dataclass
class Recorder:
    requests: list[Request] = field(default_factory=list)

    def clear(self) -> None:
        self.requests.clear()

    def gets(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("get_object", "GET")]


@dataclass
class S3Server:
    options: dict  # storage_options for s3fs
    fs: object  # an s3fs.S3FileSystem with those options
    recorder: Recorder

    def upload(self, local: Path, key: str) -> str:
        self.fs.put(str(local), f"bucket/{key}", recursive=local.is_dir())
        return f"s3://bucket/{key}"


@pytest.fixture
def s3(monkeypatch):
    """A bucket on a local moto S3 server; every s3fs call is recorded (s3fs funnels
    each request through ``_call_s3``)."""
    s3fs = pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "test", "secret": "test",
               "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                 "region_name": "us-east-1"}}
    # moto keeps its buckets in the process, across servers: start from none.
    urllib.request.urlopen(urllib.request.Request(
        f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    fs = s3fs.S3FileSystem(**options)
    fs.call_s3("create_bucket", Bucket="bucket")
    recorder = Recorder()
    original = s3fs.S3FileSystem._call_s3

    async def recording(self, method, *args, **kwargs):
        recorder.requests.append(Request(method, kwargs.get("Key") or kwargs.get("Prefix", ""),
                                         kwargs.get("Range")))
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", recording)
    yield S3Server(options, fs, recorder)
    server.stop()


@dataclass
class HttpServer:
    root: Path  # the served folder
    url: str
    recorder: Recorder


@pytest.fixture
def http(tmp_path):
    """A static file server over ``tmp_path / "www"`` (werkzeug's send_from_directory:
    Range requests, suffix ranges included, as any web server or CDN serves files)."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.serving import make_server
    from werkzeug.utils import send_from_directory
    from werkzeug.wrappers import Request as WsgiRequest

    root = tmp_path / "www"
    root.mkdir()
    recorder = Recorder()

    def serve(environ, start_response):
        request = WsgiRequest(environ)
        recorder.requests.append(Request(request.method, request.path.lstrip("/"),
                                         request.headers.get("Range")))
        try:
            response = send_from_directory(root, request.path.lstrip("/"), environ)
        except HTTPException as error:  # 404 for a missing key, as a server answers
            response = error
        return response(environ, start_response)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, serve, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield HttpServer(root, f"http://127.0.0.1:{server.server_port}", recorder)
    server.shutdown()
