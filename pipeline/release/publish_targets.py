"""Where `pipeline publish` writes: a Hub dataset repo, or a folder with the same layout.

Both targets answer the same questions — is this file already there with this content, which
files exist under a prefix, what does an existing small file say — and apply one batch of
additions and deletions at a time. On the Hub a batch is one `create_commit` (atomic: a failed
commit leaves the branch where it was), chained with `parent_commit` so a concurrent writer is
detected instead of overwritten. In a folder each file is written under a temporary name and
renamed, so a file present is a complete file.

A finished Hub publish is tagged `jat-format-v<format_version>` (the `DatasetInfo` it published):
the tag names the latest complete publish in that on-disk format, so it is set only after the
last commit and moved (deleted, re-created) when a later publish adds a commit. A consumer pinning
`revision="jat-format-v1"` never sees a half-finished publish. A folder has no tags.

The Hub token comes from `HF_TOKEN` or the login cache through `huggingface_hub.get_token()`;
it is passed to the client and never formatted into a message, a log line or a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import pyarrow.fs as pafs
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from pipeline.configs.publish import check_branch, check_repo_id
from pipeline.errors import PipelineError
from pipeline.format.manifest import DatasetInfo
from pipeline.format.schema import TMP_DIR
from pipeline.runtime.storage import Location, check_writable, open_location

log = logging.getLogger(__name__)

COPY_CHUNK = 8 << 20
FORMAT_TAG = "jat-format-v{version}"
"""The tag naming main's latest publish in a format version; another branch's gets `-<branch>`."""


@dataclass(frozen=True)
class PublishFile:
    """One file of the published layout, with the checksum it must have once published."""

    path: str
    """Path inside the repo or folder (same as in the dataset layout)."""
    size: int
    sha256: str
    """For shards: the manifest's checksum (validation just confirmed it), never recomputed."""
    data: bytes | None = None
    """Generated content (card, statistics, figures, manifest copy); None for shards."""
    source: str | None = None
    """Path relative to the source dataset root when `data` is None."""

    @classmethod
    def generated(cls, path: str, data: bytes) -> PublishFile:
        return cls(path, len(data), hashlib.sha256(data).hexdigest(), data=data)


def git_blob_oid(data: bytes) -> str:
    """The git object id of a regular (non-LFS) file, which the Hub reports for such files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Target(Protocol):
    """A publish destination."""

    name: str

    def check(self) -> None: ...

    def prepare(self) -> None: ...

    def unchanged(self, file: PublishFile) -> bool: ...

    def paths_under(self, prefix: str) -> list[str]: ...

    def read(self, path: str) -> bytes | None: ...

    def apply(
        self, files: list[PublishFile], deletions: list[str], message: str, source: Location
    ) -> None: ...

    def tag(self, info: DatasetInfo) -> str | None:
        """Mark the finished publish with its format version; the tag's name, or None without tags."""
        ...

    def close(self) -> None: ...


@contextlib.contextmanager
def _plain_lfs(enabled: bool) -> Iterator[None]:
    """Upload through the LFS HTTP protocol instead of Xet while active (servers without Xet storage)."""
    if not enabled:
        yield
        return
    before = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = before


class HubTarget:
    """A dataset repo on the Hub (or any server speaking its API at `HF_ENDPOINT`); `repo_type` "model"
    makes it a model repo (`pipeline.release.hub_models`)."""

    repo_type = "dataset"

    def __init__(self, repo_id: str, branch: str | None, private: bool, xet: bool) -> None:
        check_repo_id(repo_id)
        if branch is not None:
            check_branch(branch)
        self.repo_id, self.branch, self.private, self.xet = repo_id, branch or "main", private, xet
        self.endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        kind = "datasets/" if self.repo_type == "dataset" else ""
        self.name = f"{self.endpoint}/{kind}{repo_id}" + (f"@{branch}" if branch else "")
        self.api: HfApi | None = None
        self.head: str | None = None
        self._tree: dict[str, Any] = {}
        self._tmp = tempfile.mkdtemp(prefix="jat-publish-")

    def _fail(self, action: str, exc: Exception, fix: str) -> PipelineError:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        cause = f"HTTP {status}" if status else type(exc).__name__
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return PipelineError(f"{action} on {self.endpoint} failed ({cause}: {detail}): {fix}")

    def check(self) -> None:
        """Read-only checks before any work: offline mode, token present and accepted, endpoint up."""
        if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
            raise PipelineError("HF_HUB_OFFLINE is set: unset it to publish, or publish with --to-folder DIR")
        token = get_token()
        source = "HF_TOKEN" if os.environ.get("HF_TOKEN") else "the login cache"
        if not token:
            raise PipelineError("no Hugging Face token: set HF_TOKEN to a write token or run `hf auth login`")
        self.api = HfApi(endpoint=self.endpoint, token=token, library_name="jat-pipeline")
        try:
            user = self.api.whoami()
        except HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code == 401:
                raise PipelineError(
                    f"the Hub at {self.endpoint} rejected the token from {source} (HTTP 401): "
                    "create a write token at https://huggingface.co/settings/tokens and set HF_TOKEN"
                ) from None
            raise self._fail("checking the token", exc, "check HF_ENDPOINT and the token") from None
        except (httpx2.HTTPError, OSError) as exc:
            raise PipelineError(
                f"cannot reach the Hub at {self.endpoint} ({type(exc).__name__}): check HF_ENDPOINT and the "
                "network, or publish to a local folder with --to-folder DIR"
            ) from None
        log.info("publishing as %s to %s", user.get("name", "?"), self.name)

    def prepare(self) -> None:
        """Create the repo (and branch) if needed, then list what is already there."""
        assert self.api is not None, "check() first"
        try:
            self.api.create_repo(self.repo_id, repo_type=self.repo_type, private=self.private, exist_ok=True)
            if self.branch != "main":
                self.api.create_branch(
                    self.repo_id, branch=self.branch, repo_type=self.repo_type, exist_ok=True
                )
            info = self.api.repo_info(self.repo_id, revision=self.branch, repo_type=self.repo_type)
            self.head = info.sha
            if info.private != self.private:
                log.warning(
                    "%s already exists and is %s; --private does not change an existing repo",
                    self.repo_id,
                    "private" if info.private else "public",
                )
            self._tree = {
                entry.path: entry
                for entry in self.api.list_repo_tree(
                    self.repo_id, recursive=True, revision=self.head, repo_type=self.repo_type
                )
                if hasattr(entry, "blob_id")
            }
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise self._fail(
                f"opening {self.repo_id}", exc, "check the repo id and the token's rights"
            ) from None
        except HfHubHTTPError as exc:
            raise self._fail(
                f"creating or reading {self.repo_id}", exc, "check that the token may write to this namespace"
            ) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise self._fail(f"opening {self.repo_id}", exc, "check HF_ENDPOINT and the network") from None
        log.info("%s at %s holds %d files", self.name, self.head, len(self._tree))

    def unchanged(self, file: PublishFile) -> bool:
        entry = self._tree.get(file.path)
        if entry is None or entry.size != file.size:
            return False
        if entry.lfs is not None:
            return entry.lfs.sha256 == file.sha256
        if file.data is not None:
            return entry.blob_id == git_blob_oid(file.data)
        return False  # a shard stored as a regular git file: re-upload it (the server decides LFS)

    def paths_under(self, prefix: str) -> list[str]:
        return sorted(p for p in self._tree if p.startswith(prefix))

    def read(self, path: str) -> bytes | None:
        assert self.api is not None and self.head is not None
        if path not in self._tree:
            return None
        try:
            local = self.api.hf_hub_download(
                self.repo_id,
                path,
                repo_type=self.repo_type,
                revision=self.head,
                cache_dir=os.path.join(self._tmp, "cache"),
            )
        except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
            raise self._fail(
                f"downloading {path}", exc, "re-run; check HF_ENDPOINT and the network"
            ) from None
        with open(local, "rb") as f:
            return f.read()

    def apply(self, files: list[PublishFile], deletions: list[str], message: str, source: Location) -> None:
        """One commit: the files (shards streamed from disk with their manifest sha256) and deletions."""
        assert self.api is not None
        operations: list[CommitOperationAdd | CommitOperationDelete] = []
        staged: list[str] = []
        for file in files:
            if file.data is not None:
                operations.append(CommitOperationAdd(file.path, file.data))
                continue
            assert file.source is not None
            local = source.path(file.source) if source.is_local else _stage(source, file.source, self._tmp)
            if not source.is_local:
                staged.append(local)
            op = CommitOperationAdd(file.path, local)
            op.upload_info.sha256 = bytes.fromhex(file.sha256)
            operations.append(op)
        operations += [CommitOperationDelete(p) for p in deletions]
        try:
            with _plain_lfs(not self.xet):
                info = self.api.create_commit(
                    self.repo_id,
                    operations,
                    commit_message=message,
                    repo_type=self.repo_type,
                    revision=self.branch,
                    parent_commit=self.head,
                )
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            fix = (
                "another upload moved the branch meanwhile: re-run to publish on top of it"
                if status == 412
                else "re-run the same command: committed files are kept and skipped, nothing is duplicated"
            )
            raise self._fail(f"commit {message!r} to {self.repo_id}", exc, fix) from None
        except (httpx2.HTTPError, OSError, RuntimeError, ValueError) as exc:
            raise self._fail(
                f"uploading for {message!r}",
                exc,
                "re-run the same command: committed files are kept and skipped",
            ) from None
        finally:
            for path in staged:
                os.remove(path)
        self.head = info.oid

    def tag(self, info: DatasetInfo) -> str:
        """Point `jat-format-v<N>` at the head this publish left (also after a run with no commit).

        The tag is the branch's: main's is `jat-format-v<N>`, another branch's
        `jat-format-v<N>-<branch>`, so a preview on a side branch never takes main's tag away.
        Called once, after the last commit: an interrupted publish leaves the tag on the previous
        complete one, and its re-run (no commit left to make) still tags. The Hub cannot move a
        tag, so one on an older commit is deleted and re-created.
        """
        assert self.api is not None and self.head is not None, "prepare() first"
        name = FORMAT_TAG.format(version=info.format_version)
        if self.branch != "main":
            name += f"-{self.branch}"
        message = f"jat-pipeline: the latest data in JAT format v{info.format_version} on {self.branch}"
        try:
            refs = self.api.list_repo_refs(self.repo_id, repo_type=self.repo_type)
            current = next((t.target_commit for t in refs.tags if t.name == name), None)
            if current == self.head:
                log.info("%s already tags %s", name, self.head)
                return name
            if current is not None:
                self.api.delete_tag(self.repo_id, tag=name, repo_type=self.repo_type)
            self.api.create_tag(
                self.repo_id, tag=name, tag_message=message, revision=self.head, repo_type=self.repo_type
            )
        except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
            raise self._fail(
                f"tagging {self.head} as {name}",
                exc,
                "re-run the same command: the data is committed, the re-run only sets the tag",
            ) from None
        log.info("tagged %s as %s%s", self.head, name, f" (moved from {current})" if current else "")
        return name

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def _stage(source: Location, relative: str, tmp: str) -> str:
    """Copy a shard from a remote dataset (S3…) to a temporary local file for upload."""
    local = os.path.join(tmp, relative.replace("/", "_"))
    with source.fs.open_input_stream(source.path(relative)) as src, open(local, "wb") as dst:
        while block := src.read(COPY_CHUNK):
            dst.write(block)
    return local


class FolderTarget:
    """A folder (local or any `pyarrow.fs` URI) receiving the same layout as the Hub repo."""

    def __init__(self, uri: str) -> None:
        self.location = open_location(uri)
        self.name = self.location.uri
        self._sizes: dict[str, int] = {}

    def check(self) -> None:
        info = self.location.fs.get_file_info(self.location.root)
        if info.type == pafs.FileType.File:
            raise PipelineError(f"--to-folder {self.name} is a file: give a folder")

    def prepare(self) -> None:
        check_writable(self.location)
        self._sizes = {
            self.location.relative(i.path): i.size
            for i in self.location.list("", recursive=True)
            if i.type == pafs.FileType.File and not self.location.relative(i.path).startswith(f"{TMP_DIR}/")
        }

    def unchanged(self, file: PublishFile) -> bool:
        if self._sizes.get(file.path) != file.size:
            return False
        return self.location.sha256(self.location.path(file.path)) == file.sha256

    def paths_under(self, prefix: str) -> list[str]:
        return sorted(p for p in self._sizes if p.startswith(prefix))

    def read(self, path: str) -> bytes | None:
        return self.location.read_bytes(path) if path in self._sizes else None

    def apply(self, files: list[PublishFile], deletions: list[str], message: str, source: Location) -> None:
        log.debug("%s: %s", self.name, message)
        for file in files:
            if file.data is not None:
                self.location.write_bytes(file.path, file.data)
            else:
                assert file.source is not None
                self._copy(source, file)
            self._sizes[file.path] = file.size
        for path in deletions:
            self.location.delete(path)
            self._sizes.pop(path, None)

    def _copy(self, source: Location, file: PublishFile) -> None:
        """Stream a shard into place under a temporary name, checking its sha256 on the way."""
        assert file.source is not None
        tmp = self.location.tmp_path(file.path)
        digest = hashlib.sha256()
        with (
            source.fs.open_input_stream(source.path(file.source)) as src,
            self.location.fs.open_output_stream(tmp) as dst,
        ):
            while block := src.read(COPY_CHUNK):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest() != file.sha256:
            self.location.fs.delete_file(tmp)
            raise PipelineError(
                f"{file.source} changed while publishing (sha256 differs from its manifest): "
                "re-run `pipeline validate`, then publish again"
            )
        self.location.commit(tmp, file.path)

    def tag(self, info: DatasetInfo) -> None:
        """A folder has no tags: its `meta/info.json` already states the format version."""
        return None

    def close(self) -> None:
        self.location.delete(TMP_DIR)
