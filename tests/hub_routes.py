"""The Hub API routes of the tests' server, as `huggingface_hub` 2.4 calls them.

Payloads and headers follow the client's source (`hf_api.py`, `_commit_api.py`, `lfs.py`,
`file_download.py`): preupload answers "lfs" for binary/large/LFS-pattern files with the remote
oid (sha256 for LFS, git blob oid otherwise), the LFS batch API hands out "basic" PUT + verify
actions (none for objects already stored, which is what makes re-uploads free), the NDJSON
commit checks every operation before writing one snapshot, and tags are created on a revision
(409 when the name is taken, as `create_tag` expects) and listed by `list_repo_refs`.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from hub_store import LFS_PATTERNS, LFS_SIZE, HubError, git_blob_oid, lfs_pointer, write_atomic

PAGE_SIZE = 1000
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


class HubRoutes:
    """Route handlers mixed into the request handler (which provides the HTTP plumbing)."""

    hub: Any
    kind: str
    repo_id: str
    params: dict[str, str]
    query: dict[str, list[str]]
    user: str | None
    path: str
    command: str
    headers: Any

    def route_whoami(self) -> None:
        if self.user is None:
            raise HubError(401, "Invalid username or password.")
        self._json(
            {
                "type": "user",
                "name": self.user,
                "orgs": [{"name": o} for o in self.hub.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
            }
        )

    def route_create(self) -> None:
        body = self._json_body()
        self.kind = body.get("type") or "model"
        name, namespace = body.get("name", ""), body.get("organization") or self.hub.user
        if not re.fullmatch(NAME_RE, name) or not re.fullmatch(NAME_RE, namespace):
            raise HubError(400, f"Invalid repo name {namespace}/{name}")
        self.repo_id = f"{namespace}/{name}"
        self._need_write()
        private = body.get("visibility") == "private" or bool(body.get("private"))
        url = self._base()
        if not self.hub.store.create(self.kind, self.repo_id, private):
            raise HubError(409, f"You already created this {self.kind} repo: {url}", url=url)
        self._json({"url": url, "name": self.repo_id, "id": self.repo_id})

    def route_validate_yaml(self) -> None:
        content = self._json_body().get("content", "")
        errors = []
        if content.startswith("---"):
            try:
                header = yaml.safe_load(content.split("---", 2)[1])
            except yaml.YAMLError as exc:
                header, errors = None, [{"message": f"YAML: {exc}"}]
            if header is not None and not isinstance(header, dict):
                errors.append({"message": "metadata must be a mapping"})
            for entry in (header or {}).get("configs", []) if isinstance(header, dict) else []:
                if not isinstance(entry, dict) or "config_name" not in entry or "data_files" not in entry:
                    errors.append({"message": f"configs entry {entry!r} needs config_name and data_files"})
        self._json({"errors": errors, "warnings": []}, 400 if errors else 200)

    def route_info(self) -> None:
        repo = self._repo()
        commit = self.hub.store.resolve(self.kind, self.repo_id, self.params.get("rev", "main"))
        blobs = self.query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, entry in sorted(commit["files"].items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling |= {"size": entry["size"], "blobId": entry["git_oid"]}
                if entry["lfs"]:
                    lfs = self._lfs(entry)
                    sibling["lfs"] = {
                        "size": lfs["size"],
                        "sha256": lfs["oid"],
                        "pointerSize": lfs["pointerSize"],
                    }
            siblings.append(sibling)
        card = None
        if "README.md" in commit["files"]:
            text = self.hub.store.blob_path(commit["files"]["README.md"]["sha256"]).read_text()
            if text.startswith("---"):
                card = yaml.safe_load(text.split("---", 2)[1])
        self._json(
            {
                "id": self.repo_id,
                "author": self.repo_id.split("/")[0],
                "sha": commit["oid"],
                "private": repo["private"],
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": repo["created"],
                "lastModified": commit["date"],
                "siblings": siblings,
                **({"cardData": card} if isinstance(card, dict) else {}),
            }
        )

    def route_preupload(self) -> None:
        self._need_write()
        self._repo()
        commit = self.hub.store.resolve(self.kind, self.repo_id, self.params["rev"])
        out = []
        for item in self._json_body().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            path, size = item["path"], int(item["size"])
            lfs = (
                any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)
                or size >= LFS_SIZE
                or b"\0" in sample
            )
            remote = commit["files"].get(path)
            oid = None if remote is None else remote["sha256"] if lfs else remote["git_oid"]
            out.append(
                {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json({"files": out, "commitOid": commit["oid"]})

    def route_xet(self) -> None:
        raise HubError(
            501, "this test server has no Xet storage: set HF_HUB_DISABLE_XET=1 to upload through LFS"
        )

    def route_lfs_batch(self) -> None:
        self._need_write()
        self._repo()
        body = self._json_body()
        if body.get("operation") != "upload" or "basic" not in body.get("transfers", ["basic"]):
            raise HubError(400, "only the 'upload' operation with the 'basic' transfer is supported")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.hub.store.has_blob(oid, size):
                href = f"{self.hub.url}/lfs-upload/{oid}?ticket={self.hub.ticket(oid)}&size={size}"
                entry["actions"] = {
                    "upload": {"href": href, "header": {}},
                    "verify": {"href": f"{self.hub.url}/lfs-verify", "header": {}},
                }
            objects.append(entry)
        self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def route_lfs_upload(self) -> None:
        oid = self.params["oid"]
        if not hmac.compare_digest(self.query.get("ticket", [""])[0], self.hub.ticket(oid)):
            self._read_body()
            raise HubError(403, "invalid or missing upload ticket")
        data = self._read_body()
        if hashlib.sha256(data).hexdigest() != oid or len(data) != int(self.query.get("size", ["-1"])[0]):
            raise HubError(400, f"uploaded content does not match oid {oid} and its size")
        self.hub.store.put_blob(data)
        with self.hub._lock:
            self.hub.lfs_bytes += len(data)
        self._send(200)

    def route_lfs_verify(self) -> None:
        self._need_write_token_only()
        body = self._json_body()
        if not self.hub.store.has_blob(body.get("oid", ""), body.get("size")):
            raise HubError(404, f"LFS object {body.get('oid')} not found")
        self._json({"success": True})

    def _need_write_token_only(self) -> None:
        if self.user is None:
            raise HubError(401, "You must be authenticated")

    def route_commit(self) -> None:
        """Apply an NDJSON commit: check every operation first, then write one snapshot."""
        self._need_write()
        self._repo()
        branch = self.params["rev"]
        lines = [json.loads(line) for line in self._read_body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        header = lines[0]["value"]
        with self.hub.store.lock:
            head = self.hub.store.resolve(self.kind, self.repo_id, branch)
            files = dict(head["files"])
            for line in lines[1:]:
                self._apply(files, line["key"], line["value"])
            oid = self.hub.store.commit(
                self.kind,
                self.repo_id,
                branch,
                files,
                header.get("summary", ""),
                header.get("description", ""),
                header.get("parentCommit") or head["oid"],
            )
        self._json(
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self._base()}/commit/{oid}",
                "pullRequestUrl": None,
                "commitMessage": header.get("summary", ""),
            }
        )

    def _apply(self, files: dict[str, dict[str, Any]], key: str, value: dict[str, Any]) -> None:
        path = value["path"].strip("/")
        if key == "file":
            data = (
                base64.b64decode(value["content"])
                if value.get("encoding") == "base64"
                else value["content"].encode()
            )
            files[path] = {
                "sha256": self.hub.store.put_blob(data),
                "size": len(data),
                "git_oid": git_blob_oid(data),
                "lfs": False,
            }
        elif key == "lfsFile":
            oid = value["oid"]
            size = value.get("size")
            if not self.hub.store.has_blob(oid, size):
                raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
            size = self.hub.store.blob_path(oid).stat().st_size
            files[path] = {
                "sha256": oid,
                "size": size,
                "git_oid": git_blob_oid(lfs_pointer(oid, size)),
                "lfs": True,
            }
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            doomed = [p for p in files if p.startswith(path + "/")]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise HubError(400, f"unsupported commit operation {key!r}")

    @staticmethod
    def _lfs(entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "oid": entry["sha256"],
            "size": entry["size"],
            "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"])),
        }

    def _entries(self, commit: dict[str, Any], expand: bool) -> dict[str, dict[str, Any]]:
        """Every file and folder of a commit as the tree API describes them."""
        out: dict[str, dict[str, Any]] = {}
        folders: dict[str, list[str]] = {}
        for path, entry in commit["files"].items():
            item = {"type": "file", "oid": entry["git_oid"], "size": entry["size"], "path": path}
            if entry["lfs"]:
                item["lfs"] = self._lfs(entry)
            out[path] = item
            parts = path.split("/")
            for i in range(1, len(parts)):
                folders.setdefault("/".join(parts[:i]), []).append(entry["git_oid"])
        for folder, oids in folders.items():
            tree_oid = hashlib.sha1("".join(sorted(oids)).encode()).hexdigest()
            out[folder] = {"type": "directory", "oid": tree_oid, "size": 0, "path": folder}
        if expand:
            history = self.hub.store.history(self.kind, self.repo_id, commit["oid"])
            for path, item in out.items():
                last = next(
                    (
                        c
                        for c in history
                        if any(p == path or p.startswith(path + "/") for p in c["changed"] + c["deleted"])
                    ),
                    history[-1],
                )
                item["lastCommit"] = {"id": last["oid"], "title": last["title"], "date": last["date"]}
        return out

    def route_tree(self) -> None:
        self._repo()
        commit = self.hub.store.resolve(self.kind, self.repo_id, self.params["rev"])
        base = self.params.get("path", "").strip("/")
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        expand = self.query.get("expand", ["false"])[0].lower() == "true"
        entries = self._entries(commit, expand)
        if base and entries.get(base, {}).get("type") != "directory":
            raise HubError(404, f"{base} does not exist on {self.params['rev']}", "EntryNotFound")
        prefix = base + "/" if base else ""
        chosen = [
            e
            for p, e in sorted(entries.items())
            if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])
        ]
        start = int(self.query.get("cursor", ["0"])[0])
        page = chosen[start : start + PAGE_SIZE]
        headers = {}
        if start + PAGE_SIZE < len(chosen):
            query = (
                f"recursive={str(recursive).lower()}&expand={str(expand).lower()}&cursor={start + PAGE_SIZE}"
            )
            headers["Link"] = f'<{self.hub.url}{urlsplit(self.path).path}?{query}>; rel="next"'
        self._json(page, headers=headers)

    def route_paths_info(self) -> None:
        self._repo()
        form = parse_qs(self._read_body().decode())
        commit = self.hub.store.resolve(self.kind, self.repo_id, self.params["rev"])
        expand = form.get("expand", ["false"])[0].lower() == "true"
        entries = self._entries(commit, expand)
        self._json([entries[p.strip("/")] for p in form.get("paths", []) if p.strip("/") in entries])

    def route_branch(self) -> None:
        self._need_write()
        self._repo()
        body = self._json_body()
        start = self.hub.store.resolve(self.kind, self.repo_id, body.get("startingPoint") or "main")
        with self.hub.store.lock:
            refs = self.hub.store.refs(self.kind, self.repo_id)
            if self.params["branch"] in refs:
                raise HubError(409, f"Reference already exists: refs/heads/{self.params['branch']}")
            refs[self.params["branch"]] = start["oid"]
            write_atomic(
                self.hub.store.repo_dir(self.kind, self.repo_id) / "refs.json", json.dumps(refs).encode()
            )
        self._json({"success": True})

    def route_refs(self) -> None:
        self._repo()
        refs = self.hub.store.refs(self.kind, self.repo_id)
        tags = self.hub.store.tags(self.kind, self.repo_id)
        prs = self.query.get("include_prs", ["0"])[0] not in ("0", "false")
        self._json(
            {
                "branches": [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                    for b, oid in sorted(refs.items())
                ],
                "converts": [],
                "tags": [
                    {"name": t, "ref": f"refs/tags/{t}", "targetCommit": tag["oid"]}
                    for t, tag in sorted(tags.items())
                ],
                **({"pullRequests": []} if prs else {}),
            }
        )

    def route_tag(self) -> None:
        """`create_tag`: POST {"tag", "message"?} to /tag/{revision} (a branch, tag or commit oid)."""
        self._need_write()
        self._repo()
        body = self._json_body()
        tag = body.get("tag")
        if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z0-9][\w./-]{0,99}", tag) or ".." in tag:
            raise HubError(400, f"invalid tag name {tag!r}")
        self.hub.store.create_tag(self.kind, self.repo_id, tag, self.params["rev"], body.get("message") or "")
        self._json({"success": True})

    def route_delete_tag(self) -> None:
        self._need_write()
        self._repo()
        self.hub.store.delete_tag(self.kind, self.repo_id, self.params["tag"])
        self._json({"success": True})

    def route_commits(self) -> None:
        self._repo()
        history = self.hub.store.history(self.kind, self.repo_id, self.params["rev"])
        self._json(
            [
                {
                    "id": c["oid"],
                    "title": c["title"],
                    "message": c["message"],
                    "date": c["date"],
                    "authors": [{"user": self.hub.user}],
                }
                for c in history
            ]
        )

    def route_resolve(self) -> None:
        self._repo()
        commit = self.hub.store.resolve(self.kind, self.repo_id, self.params["rev"])
        path = self.params["path"]
        entry = commit["files"].get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        etag = entry["sha256"] if entry["lfs"] else entry["git_oid"]
        headers = {"X-Repo-Commit": commit["oid"], "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers |= {"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry["size"])}
        data = b"" if self.command == "HEAD" else self.hub.store.blob_path(entry["sha256"]).read_bytes()
        status = 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if self.command == "GET":
            self.hub.downloads.append((self.repo_id, path, int(ranged[1] or 0) if ranged else 0))
        if ranged and self.command == "GET":
            size = entry["size"]
            first = int(ranged[1]) if ranged[1] else max(size - int(ranged[2] or 0), 0)
            last = min(int(ranged[2]), size - 1) if ranged[1] and ranged[2] else size - 1
            if first >= size and size:
                raise HubError(416, f"range {self.headers['Range']} outside a {size}-byte file")
            data, status = data[first : last + 1], 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Length", str(entry["size"]))
            self.send_header("Content-Type", "application/octet-stream")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            return
        if self.hub.bytes_per_s:
            self._send_slowly(status, data, headers, self.hub.bytes_per_s)
            return
        self._send(status, data, headers, content_type="application/octet-stream")

    def _send_slowly(self, status: int, data: bytes, headers: dict[str, str], bytes_per_s: float) -> None:
        """A file body at about `bytes_per_s`, block by block (`HubServer.throttle`)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        for start in range(0, len(data), 4096):
            self.wfile.write(data[start : start + 4096])
            self.wfile.flush()
            time.sleep(4096 / bytes_per_s)
