"""A local S3 server for the object-storage benchmark and tests: moto's server in a real
subprocess behind a counting proxy. Never imports tests/ (tests/helpers.py builds on this one).
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 server (`moto_server`, a real subprocess on 127.0.0.1) behind a counting
    proxy in this process: screener talks to the proxy (`endpoint`), which forwards every
    request and records it (`requests`: (method, path, query)); `fail_next(bucket, key, n)`
    answers the next n GETs of an object with 503 SlowDown, as a throttling S3 does. Tests upload
    through `client` (boto3, straight to moto), so the counts are screener's alone."""

    def __init__(self, folder: Path):
        import http.server
        import urllib.request
        self.folder = folder
        self.moto_port = free_port()
        self.log = open(folder / "moto.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.moto = f"http://127.0.0.1:{self.moto_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.moto}/moto-api/data.json", timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: "
                                       f"{(folder / 'moto.log').read_text()[-2000:]}")
                time.sleep(0.1)
        self.requests: list[tuple[str, str, str]] = []
        self.failing: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Forward(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                import http.client
                import urllib.parse
                url = urllib.parse.urlsplit(self.path)
                with server.lock:
                    server.requests.append((self.command, url.path, url.query))
                    fail = server.failing.get(url.path, 0) if self.command == "GET" else 0
                    if fail:
                        server.failing[url.path] = fail - 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fail:
                    data = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown"
                            b"</Code><Message>Please reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", server.moto_port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                         "content-length", "server", "date"):
                        self.send_header(k, v)
                # A HEAD's length is the object's, not that of its (empty) body.
                self.send_header("Content-Length", resp.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.proxy.daemon_threads = True
        threading.Thread(target=self.proxy.serve_forever, daemon=True,
                         name="s3-proxy").start()
        self.endpoint = f"http://127.0.0.1:{self.proxy.server_address[1]}"
        # Credentials of no real account, spelled so that a leak is easy to find.
        self.env = {"AWS_ACCESS_KEY_ID": "AKIATESTKEYID0LEAK", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_SECRET_ACCESS_KEY": "s3cr3t-test-secret-must-never-show",
                    "AWS_ENDPOINT_URL": self.endpoint, "AWS_EC2_METADATA_DISABLED": "true",
                    "AWS_CONFIG_FILE": str(folder / "no-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-credentials")}

    @property
    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.moto, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def bucket(self, name: str, versioned: bool = False) -> str:
        c = self.client
        c.create_bucket(Bucket=name)
        if versioned:
            c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def upload(self, bucket: str, key: str, data) -> str:
        """Put bytes (or a file's) at s3://bucket/key; returns the URL."""
        data = data.read_bytes() if isinstance(data, Path) else data
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> str:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                self.upload(bucket, f"{prefix}/{p.relative_to(folder).as_posix()}", p)
        return f"s3://{bucket}/{prefix}/"

    def gets(self, bucket: str, key: str | None = None) -> int:
        """GET requests of one object (of any object in the bucket when key is None)."""
        with self.lock:
            if key is not None:
                return sum(m == "GET" and p == f"/{bucket}/{key}" for m, p, _ in self.requests)
            return sum(m == "GET" and p.startswith(f"/{bucket}/") and len(p) > len(bucket) + 2
                       for m, p, _ in self.requests)

    def fail_next(self, bucket: str, key: str, n: int) -> None:
        with self.lock:
            self.failing[f"/{bucket}/{key}"] = n

    def moto_api(self, path: str, data: bytes) -> None:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(
            f"{self.moto}/moto-api/{path}", data=data, method="POST",
            headers={"Content-Type": "text/plain"}), timeout=10).read()

    def close(self) -> None:
        self.proxy.shutdown()
        self.proxy.server_close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
