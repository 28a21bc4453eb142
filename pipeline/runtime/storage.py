"""Where datasets live: a local folder or any URI `pyarrow.fs` understands (s3://…).

Everything written goes to a temporary name under `.tmp/` first and is moved into place
only when complete, so a crash never leaves a half-written file under `data/` or `meta/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.errors import PipelineError
from pipeline.format.schema import TMP_DIR
from pipeline.runtime import faults


@dataclass(frozen=True)
class Location:
    """A dataset root: a filesystem and a base path inside it."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}" if relative else self.root

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def is_empty(self) -> bool:
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return True
        if info.type == pafs.FileType.File:
            raise PipelineError(f"output {self.uri} is a file, not a folder: choose another --out")
        selector = pafs.FileSelector(self.root, recursive=False)
        return not self.fs.get_file_info(selector)

    def list(self, relative: str, recursive: bool = False) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.path(relative), recursive=recursive, allow_not_found=True)
        return sorted(self.fs.get_file_info(selector), key=lambda i: i.path)

    def relative(self, path: str) -> str:
        return path[len(self.root.rstrip("/")) + 1 :]

    def tmp_path(self, name: str) -> str:
        """A fresh temporary name under `.tmp/` (created), where a file is written before `commit`."""
        self.fs.create_dir(self.path(TMP_DIR), recursive=True)
        return self.path(f"{TMP_DIR}/{uuid.uuid4().hex[:12]}-{name.replace('/', '_')}")

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self.path(relative)) as f:
            return f.read()

    def read_json(self, relative: str) -> Any:
        return json.loads(self.read_bytes(relative))

    def commit(self, tmp: str, relative: str) -> None:
        """Move a finished temporary file into place (a rename locally, copy+delete on S3)."""
        final = self.path(relative)
        faults.hit("storage.commit")  # the file is written in full, not yet in place
        self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        self.fs.move(tmp, final)
        faults.hit("storage.committed")

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a whole file atomically: temporary name, then move."""
        tmp = self.tmp_path(relative)
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.commit(tmp, relative)

    def upload(self, local_path: str, relative: str, chunk: int = 8 << 20) -> None:
        """Copy a local file into place atomically, streamed (checkpoints and buffers can be GBs)."""
        tmp = self.tmp_path(relative)
        with open(local_path, "rb") as src, self.fs.open_output_stream(tmp) as dst:
            while block := src.read(chunk):
                dst.write(block)
        self.commit(tmp, relative)

    def write_json(self, relative: str, data: Any) -> None:
        self.write_bytes(relative, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode())

    def delete(self, relative: str) -> None:
        path = self.path(relative)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(path)

    def sha256(self, path: str, chunk: int = 8 << 20) -> str:
        digest = hashlib.sha256()
        with self.fs.open_input_stream(path) as f:
            while block := f.read(chunk):
                digest.update(block)
        return digest.hexdigest()


def is_uri(location: str) -> bool:
    """A filesystem URI (`s3://bucket/prefix`, `hf://...`) rather than a local path: the one test of
    which kind of place a stage was given."""
    return "://" in location


def open_location(uri: str) -> Location:
    """Resolve `--out`/`DIR`: a local path (relative ones made absolute) or a filesystem URI."""
    if not is_uri(uri):
        path = os.path.abspath(os.path.expanduser(uri))
        return Location(pafs.LocalFileSystem(), path, path)
    if uri.startswith("s3://"):
        check_s3_credentials(uri)
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        fs.get_file_info(root)  # reach the server now: a wrong endpoint fails here, in one line
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        hint = f"check AWS_ENDPOINT_URL={endpoint}" if endpoint else "check the bucket name and network"
        raise PipelineError(f"cannot open {uri}: {_one_line(exc)} ({hint})") from None
    return Location(fs, root.rstrip("/"), uri)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def check_s3_credentials(uri: str) -> None:
    """Refuse an s3:// URI when no credentials can be found, instead of unsigned requests failing later.

    botocore (there with s3fs) resolves the same chain as the AWS SDK inside pyarrow: environment,
    AWS_PROFILE / ~/.aws, web identity (EKS), container and instance roles. `AWS_NO_SIGN_REQUEST=yes`
    reads a public bucket without any.
    """
    if os.environ.get("AWS_NO_SIGN_REQUEST", "").lower() in ("1", "true", "yes"):
        return
    import botocore.session

    logging.getLogger("botocore").setLevel(logging.WARNING)  # not "Found credentials in ..." per call
    try:
        credentials = botocore.session.get_session().get_credentials()
    except Exception as exc:  # a broken profile file, an unreachable role endpoint
        raise PipelineError(f"cannot read S3 credentials for {uri}: {_one_line(exc)}") from None
    if credentials is None:
        raise PipelineError(
            f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
            "plus AWS_ENDPOINT_URL for a server other than AWS; on a cluster pass them to the job "
            "(pipeline submit --env AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_ENDPOINT_URL)"
        )


def check_writable(location: Location) -> None:
    """Fail before any work when the output cannot be written (permissions, missing bucket)."""
    probe = f"{TMP_DIR}/.write-probe-{uuid.uuid4().hex[:8]}"
    try:
        location.fs.create_dir(location.path(TMP_DIR), recursive=True)
        with location.fs.open_output_stream(location.path(probe)) as f:
            f.write(b"ok")
        location.fs.delete_file(location.path(probe))
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(
            f"cannot write to {location.uri}: {exc} "
            "(choose a writable --out, or fix its permissions/credentials)"
        ) from exc
