"""Storage (pipeline/runtime/storage.py): files appear whole or not at all, under any URI pyarrow opens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pipeline.errors import PipelineError
from pipeline.format.schema import TMP_DIR
from pipeline.runtime import faults
from pipeline.runtime.storage import check_writable, open_location


def test_relative_paths_are_made_absolute_and_empty_folders_are_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = open_location("data")
    assert location.root == str(tmp_path / "data") and location.is_local
    assert location.is_empty()  # not there yet
    (tmp_path / "data").mkdir()
    assert location.is_empty()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PipelineError, match="is a file, not a folder"):
        open_location("file").is_empty()


def test_written_files_go_through_tmp_and_leave_nothing_behind(tmp_path):
    location = open_location(str(tmp_path))
    location.write_json("meta/x/info.json", {"a": 1})
    location.write_bytes("data/x/part.bin", b"abc")
    assert location.read_json("meta/x/info.json") == {"a": 1}
    assert location.read_bytes("data/x/part.bin") == b"abc"
    assert os.listdir(tmp_path / TMP_DIR) == []
    assert location.sha256(location.path("data/x/part.bin")) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    )


_WRITE_TWICE = """
import sys
from pipeline.runtime.storage import open_location
location = open_location(sys.argv[1])
location.write_json("meta/run.json", {"v": 1})
location.write_json("meta/run.json", {"v": 2})
"""


@pytest.mark.parametrize(
    ("point", "content", "temporaries"), [("storage.commit", 1, 1), ("storage.committed", 2, 0)]
)
def test_a_process_killed_around_the_move_leaves_a_whole_file(tmp_path, point, content, temporaries):
    """Killed between "written in full" and "in place", or right after: readers see a whole file."""
    env = {**os.environ, faults.FAULTS_ENV: f"{point}=2"}  # the second write's commit
    result = subprocess.run([sys.executable, "-c", _WRITE_TWICE, str(tmp_path)], env=env, timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert open_location(str(tmp_path)).read_json("meta/run.json") == {"v": content}
    assert len(os.listdir(tmp_path / TMP_DIR)) == temporaries  # what a resume deletes first


def test_upload_streams_a_local_file_into_place(tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 << 20))
    location = open_location(str(tmp_path / "out"))
    location.upload(str(source), "ckpt/big.bin", chunk=1 << 20)
    assert (tmp_path / "out" / "ckpt" / "big.bin").read_bytes() == source.read_bytes()


def test_delete_removes_files_and_folders_and_ignores_missing_ones(tmp_path):
    location = open_location(str(tmp_path))
    location.write_bytes("a/b/c.bin", b"1")
    location.write_bytes("d.bin", b"2")
    location.delete("a")
    location.delete("d.bin")
    location.delete("never")
    assert not location.exists("a") and not location.exists("d.bin")


def test_an_unwritable_output_fails_before_any_work(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    try:
        if os.access(target, os.W_OK):  # root ignores permissions: a file in the way instead
            target.chmod(0o700)
            target = tmp_path / "blocker"
            target.write_text("x")
            target = target / "sub"
        with pytest.raises(PipelineError, match="cannot write to"):
            check_writable(open_location(str(target)))
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_a_bad_uri_is_one_line():
    with pytest.raises(PipelineError, match="cannot open nosuch://x"):
        open_location("nosuch://x")
