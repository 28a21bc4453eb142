"""A small Hub-API-compatible HTTP server for tests: the real `huggingface_hub` client talks to it.

The Hub cannot be reached from the test machines, so publishing is tested against this server
on 127.0.0.1, with the client pointed at it through `HF_ENDPOINT` (or `HfApi(endpoint=...)`).
It implements the routes `huggingface_hub` 2.4 calls for what the pipeline does — whoami,
create_repo, create_branch, preupload, the LFS batch API with the "basic" transfer (PUT + verify),
the NDJSON commit, tree listing (paginated), paths-info, repo info, refs, tags (create_tag,
delete_tag), commit history and HEAD/GET (with ranges) on `resolve` — read from the client's
source (`hf_api.py`, `_commit_api.py`, `lfs.py`, `file_download.py`), so payloads and headers match.

Storage (`hub_store.py`) is real files with real commit history: content-addressed blobs, one
JSON snapshot per commit, branch heads replaced atomically; a commit is applied only after every
operation in it checked out, so a failed commit leaves the branch at its previous revision.
The routes live in `hub_routes.py`; this module holds the HTTP plumbing (routing, token check,
body reading, fault injection) and the server object tests use.

Xet storage is not implemented. `huggingface_hub` uploads through Xet whenever `hf_xet` is
installed, without asking the server; the client must be told to use the plain LFS path with
`HF_HUB_DISABLE_XET=1` (read at import) or `huggingface_hub.constants.HF_HUB_DISABLE_XET = True`.
The Xet token route answers 501 saying so. Downloads never use Xet: no `X-Xet-Hash` header is sent.

Tests can inject faults (`fail("commit", after=1)` answers 500 to the second commit), hooks
(`on("lfs-upload", fn)` runs after each stored LFS object) and delays (`slow("commit", 0.3)`: each
commit waits that long before it is handled, so that a benchmark can strike an upload mid-way), slow
file downloads down (`throttle(bytes_per_s)`, so a client can be killed in the middle of a file), and
read `counts`/`lfs_bytes` and `downloads` (each GET on `resolve`: repo, path, first byte asked for).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from hub_routes import NAME_RE, HubRoutes
from hub_store import HubError, HubStore

REPO = rf"(?P<ns>{NAME_RE})/(?P<name>{NAME_RE})"
API = rf"^/api/(?P<type>models|datasets)/{REPO}"
ROUTES: list[tuple[str, str, str]] = [
    ("GET", r"^/api/whoami-v2$", "whoami"),
    ("POST", r"^/api/repos/create$", "create"),
    ("POST", r"^/api/validate-yaml$", "validate-yaml"),
    ("GET", API + r"(?:/revision/(?P<rev>[^/]+))?$", "info"),
    ("POST", API + r"/preupload/(?P<rev>[^/]+)$", "preupload"),
    ("POST", API + r"/commit/(?P<rev>[^/]+)$", "commit"),
    ("GET", API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree"),
    ("POST", API + r"/paths-info/(?P<rev>[^/]+)$", "paths-info"),
    ("POST", API + r"/branch/(?P<branch>[^/]+)$", "branch"),
    ("GET", API + r"/refs$", "refs"),
    ("POST", API + r"/tag/(?P<rev>[^/]+)$", "tag"),
    ("DELETE", API + r"/tag/(?P<tag>[^/]+)$", "delete-tag"),
    ("GET", API + r"/commits/(?P<rev>[^/]+)$", "commits"),
    ("GET", API + r"/xet-(?:read|write)-token/(?P<rev>[^/]+)$", "xet"),
    ("POST", rf"^/(?:(?P<type>datasets)/)?{REPO}\.git/info/lfs/objects/batch$", "lfs-batch"),
    ("PUT", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$", "lfs-upload"),
    ("POST", r"^/lfs-verify$", "lfs-verify"),
    ("HEAD", rf"^/(?:(?P<type>datasets)/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
    ("GET", rf"^/(?:(?P<type>datasets)/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
]


class HubServer:
    """The server: a `ThreadingHTTPServer` in a daemon thread, storing under `root` (see hub_store)."""

    def __init__(
        self,
        root: str | Path,
        token: str = "hf_test_token_do_not_leak",
        user: str = "tester",
        orgs: tuple[str, ...] = ("jat-org",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = HubStore(Path(root))
        self.token, self.user, self.orgs = token, user, orgs
        self.counts: Counter[str] = Counter()
        self.lfs_bytes = 0
        self.downloads: list[tuple[str, str, int]] = []
        """Every GET on `resolve` as it starts: (repo, path, first byte asked for; 0 without a Range)."""
        self.bytes_per_s: float | None = None
        self._faults: list[dict[str, Any]] = []
        self._hooks: dict[str, list[Callable[[int], None]]] = {}
        self._delays: dict[str, float] = {}
        self._secret = uuid.uuid4().bytes
        self._lock = threading.Lock()
        self._httpd = _QuietServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls ---
    def fail(self, route: str, after: int = 0, times: int = 1, status: int = 500) -> None:
        """Answer `status` to calls of `route` number after+1 … after+times (counted from now)."""
        with self._lock:
            self._faults.append({"route": route, "skip": after, "times": times, "status": status})

    def throttle(self, bytes_per_s: float | None) -> None:
        """Send file bodies (`resolve` GETs) at about this rate, in 4 KiB blocks; None: at full speed."""
        self.bytes_per_s = bytes_per_s

    def on(self, route: str, hook: Callable[[int], None]) -> None:
        """Call `hook(n)` after the n-th successful call of `route` was handled."""
        self._hooks.setdefault(route, []).append(hook)

    def slow(self, route: str, seconds: float) -> None:
        """Wait `seconds` before handling each call of `route` (0 removes the delay)."""
        self._delays[route] = seconds

    def _fault(self, route: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault["route"] != route or fault["times"] <= 0:
                    continue
                if fault["skip"] > 0:
                    fault["skip"] -= 1
                    return None
                fault["times"] -= 1
                return fault["status"]
        return None

    # --- inspection for tests ---
    def head(self, repo_id: str, revision: str = "main", kind: str = "dataset") -> str | None:
        try:
            return self.store.resolve(kind, repo_id, revision)["oid"]
        except HubError:
            return None

    def history(self, repo_id: str, revision: str = "main", kind: str = "dataset") -> list[dict[str, Any]]:
        return self.store.history(kind, repo_id, revision)

    def files(self, repo_id: str, revision: str = "main", kind: str = "dataset") -> dict[str, dict[str, Any]]:
        return self.store.resolve(kind, repo_id, revision)["files"]

    def read(self, repo_id: str, path: str, revision: str = "main", kind: str = "dataset") -> bytes:
        return self.store.blob_path(self.files(repo_id, revision, kind)[path]["sha256"]).read_bytes()

    def ticket(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), "sha256").hexdigest()[:32]


class _QuietServer(ThreadingHTTPServer):
    """Clients killed mid-request (the resume tests do that) are expected: no traceback for them."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _route(method: str, path: str) -> tuple[str, re.Match[str]] | None:
    for route_method, pattern, route in ROUTES:
        match = re.match(pattern, path)
        if route_method == method and match:
            return route, match
    return None


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        hub = server

    return Handler


class _Handler(HubRoutes, BaseHTTPRequestHandler):
    """One request: route, authenticate, dispatch to `route_<name>`, answer JSON or bytes."""

    protocol_version = "HTTP/1.1"
    hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counts instead
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing ---
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body_bytes: bytes | None = None
        found = _route(method, url.path)
        if found is None:
            self._read_body()
            return self._error(HubError(404, f"no route {method} {url.path}"))
        route, match = found
        self.params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        self.kind = "dataset" if self.params.pop("type", "models") == "datasets" else "model"
        if "ns" in self.params:
            self.repo_id = f"{self.params.pop('ns')}/{self.params.pop('name')}"
        try:
            self.user = self._authenticate()
            if self.hub._delays.get(route):
                time.sleep(self.hub._delays[route])
            status = self.hub._fault(route)
            if status is not None:
                self._read_body()
                raise HubError(status, f"injected failure of {route}")
            getattr(self, "route_" + route.replace("-", "_"))()
        except HubError as exc:
            self._error(exc)
            return
        except (ConnectionError, TimeoutError):
            return  # the client went away mid-request: nothing was stored
        self.hub.counts[route] += 1
        for hook in self.hub._hooks.get(route, []):
            hook(self.hub.counts[route])

    def _authenticate(self) -> str | None:
        header = self.headers.get("Authorization")
        if header is None:
            return None
        token = header.removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token.encode(), self.hub.token.encode()):
            self._read_body()
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.user

    def _read_body(self) -> bytes:
        if self.body_bytes is not None:
            return self.body_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            data = b"".join(parts)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            if len(data) != length:
                raise ConnectionError("truncated body")
        self.body_bytes = data
        return data

    def _json_body(self) -> Any:
        try:
            return json.loads(self._read_body() or b"{}")
        except ValueError as exc:
            raise HubError(400, f"malformed JSON body: {exc}") from exc

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, exc: HubError) -> None:
        try:
            self._read_body()  # drain it, or the next request on this connection would read it
        except (ConnectionError, TimeoutError, ValueError):
            self.close_connection = True
        headers = {"X-Error-Message": str(exc)}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        self._json({"error": str(exc), **exc.extra}, exc.status, headers)

    def _need_write(self) -> None:
        """Writes need a valid token and a namespace the user owns (the user's or one of its orgs)."""
        if self.user is None:
            raise HubError(401, "You must be authenticated to write (no token sent)")
        namespace = self.repo_id.split("/")[0]
        if namespace not in (self.hub.user, *self.hub.orgs):
            raise HubError(403, f"You don't have the rights to write to {namespace}")

    def _repo(self) -> dict[str, Any]:
        repo = self.hub.store.repo(self.kind, self.repo_id)
        if repo["private"] and self.user is None:
            raise HubError(404, f"Repository {self.repo_id} not found", "RepoNotFound")
        return repo

    def _base(self) -> str:
        return self.hub.url + ("/datasets/" if self.kind == "dataset" else "/") + self.repo_id

    # --- routes ---


def main() -> None:
    """Run the server in the foreground (benchmarks, manual tries): prints its URL, serves until killed."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=os.environ.get("HUB_SERVER_TOKEN", "hf_test_token_do_not_leak"))
    args = parser.parse_args()
    with HubServer(args.root, token=args.token, port=args.port) as server:
        print(server.url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
