"""Storage of the tests' Hub server: real files with real commit history.

Blobs are content-addressed by sha256 under `objects/` (LFS and regular files alike). Each
commit is a JSON snapshot of the whole file map (path -> sha256, size, git oid, LFS or not) with
its parent, message and what it changed, under the repo's `commits/`; branch heads live in
`refs.json`, tags (name -> commit oid and message) in `tags.json`. Every file is replaced
atomically (temporary name, then rename), and a branch moves only under the store lock after
the new commit is written, so a failed or rejected commit leaves the branch at its previous
revision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any

LFS_PATTERNS = ("*.parquet", "*.arrow", "*.png", "*.jpg", "*.bin", "*.zip", "*.gz", "*.npz", "*.pt")
LFS_SIZE = 10 * 1024 * 1024
PAGE_SIZE = 1000
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


class HubError(Exception):
    """An HTTP error answer: status, message and the Hub's `X-Error-Code`."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class HubStore:
    """Repos on disk: blobs by sha256, commits as JSON snapshots, branch heads and tags in JSON maps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        (root / "objects").mkdir(parents=True, exist_ok=True)

    # --- blobs ---
    def blob_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha):
            write_atomic(self.blob_path(sha), data)
        return sha

    # --- repos ---
    def repo_dir(self, kind: str, repo_id: str) -> Path:
        return self.root / "repos" / kind / repo_id

    def repo(self, kind: str, repo_id: str) -> dict[str, Any]:
        path = self.repo_dir(kind, repo_id) / "repo.json"
        if not path.is_file():
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return json.loads(path.read_text())

    def refs(self, kind: str, repo_id: str) -> dict[str, str]:
        return json.loads((self.repo_dir(kind, repo_id) / "refs.json").read_text())

    def tags(self, kind: str, repo_id: str) -> dict[str, dict[str, str]]:
        """Tag name -> {"oid", "message"}; a repo never tagged has no `tags.json`."""
        path = self.repo_dir(kind, repo_id) / "tags.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def create_tag(self, kind: str, repo_id: str, tag: str, rev: str, message: str) -> str:
        """Tag the commit `rev` resolves to (a branch, a tag or an oid); a taken name is a conflict."""
        with self.lock:
            oid = self.resolve(kind, repo_id, rev)["oid"]
            tags = self.tags(kind, repo_id)
            if tag in tags:
                raise HubError(409, f"Tag already exists: refs/tags/{tag}")
            tags[tag] = {"oid": oid, "message": message}
            write_atomic(self.repo_dir(kind, repo_id) / "tags.json", json.dumps(tags).encode())
            return oid

    def delete_tag(self, kind: str, repo_id: str, tag: str) -> None:
        with self.lock:
            tags = self.tags(kind, repo_id)
            if tag not in tags:
                raise HubError(404, f"Invalid rev id: refs/tags/{tag}", "RevisionNotFound")
            del tags[tag]
            write_atomic(self.repo_dir(kind, repo_id) / "tags.json", json.dumps(tags).encode())

    def create(self, kind: str, repo_id: str, private: bool) -> bool:
        with self.lock:
            base = self.repo_dir(kind, repo_id)
            if (base / "repo.json").is_file():
                return False
            write_atomic(base / "repo.json", json.dumps({"private": private, "created": _now()}).encode())
            write_atomic(base / "refs.json", b"{}")
            sha = self.put_blob(GITATTRIBUTES)
            entry = {
                "sha256": sha,
                "size": len(GITATTRIBUTES),
                "git_oid": git_blob_oid(GITATTRIBUTES),
                "lfs": False,
            }
            self.commit(
                kind, repo_id, "main", {".gitattributes": entry}, "initial commit", "", None, create=True
            )
            return True

    def commit_record(self, kind: str, repo_id: str, oid: str) -> dict[str, Any]:
        path = self.repo_dir(kind, repo_id) / "commits" / f"{oid}.json"
        if not path.is_file():
            raise HubError(404, f"Invalid rev id: {oid}", "RevisionNotFound")
        return json.loads(path.read_text())

    def resolve(self, kind: str, repo_id: str, rev: str) -> dict[str, Any]:
        """A branch name, a tag name or a full commit oid → that commit's record."""
        self.repo(kind, repo_id)
        refs = self.refs(kind, repo_id)
        if rev.removeprefix("refs/heads/") in refs:
            return self.commit_record(kind, repo_id, refs[rev.removeprefix("refs/heads/")])
        tags = self.tags(kind, repo_id)
        if rev.removeprefix("refs/tags/") in tags:
            return self.commit_record(kind, repo_id, tags[rev.removeprefix("refs/tags/")]["oid"])
        if re.fullmatch(r"[0-9a-f]{40}", rev):
            return self.commit_record(kind, repo_id, rev)
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def commit(
        self,
        kind: str,
        repo_id: str,
        branch: str,
        files: dict[str, dict[str, Any]],
        title: str,
        description: str,
        expected_parent: str | None,
        create: bool = False,
    ) -> str:
        """Write a snapshot commit and move `branch` to it, unless the branch moved meanwhile."""
        with self.lock:
            refs = self.refs(kind, repo_id)
            if branch not in refs and not create:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = refs.get(branch)
            if expected_parent is not None and parent is not None and not parent.startswith(expected_parent):
                raise HubError(412, f"A commit has happened since {expected_parent}: {branch} is at {parent}")
            before = self.commit_record(kind, repo_id, parent)["files"] if parent else {}
            changed = sorted(p for p in files if before.get(p) != files[p])
            deleted = sorted(set(before) - set(files))
            record = {
                "parents": [parent] if parent else [],
                "title": title,
                "message": description,
                "date": _now(),
                "files": files,
                "changed": changed,
                "deleted": deleted,
                "nonce": uuid.uuid4().hex,
            }
            oid = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
            record["oid"] = oid
            write_atomic(
                self.repo_dir(kind, repo_id) / "commits" / f"{oid}.json", json.dumps(record).encode()
            )
            refs[branch] = oid
            write_atomic(self.repo_dir(kind, repo_id) / "refs.json", json.dumps(refs).encode())
            return oid

    def history(self, kind: str, repo_id: str, rev: str) -> list[dict[str, Any]]:
        """Commits reachable from `rev`, newest first (first parents only: no merges here)."""
        out = [self.resolve(kind, repo_id, rev)]
        while out[-1]["parents"]:
            out.append(self.commit_record(kind, repo_id, out[-1]["parents"][0]))
        return out
