"""`pipeline.release.publish_targets`: a folder and a Hub repo answer the same questions and apply the same
batches.

The Hub side runs the real `huggingface_hub` client against the local Hub-API server of
tests/hub_server.py (as tests/test_publish.py does); shards come from conftest's `sample_dataset`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, constants

from pipeline.errors import PipelineError
from pipeline.format.manifest import DatasetInfo, read_manifest
from pipeline.format.schema import FORMAT_VERSION
from pipeline.release.publish_targets import FolderTarget, HubTarget, PublishFile, git_blob_oid
from pipeline.runtime.storage import open_location

REPO = "jat-org/targets"
TAG = f"jat-format-v{FORMAT_VERSION}"
INFO = DatasetInfo(writer="jat-pipeline publish", configs=("mujoco-hopper",), versions={}, git_sha=None)


def _shard(dataset: Path) -> PublishFile:
    """The first Hopper shard of the sample dataset, as publish lists it (the manifest's checksum)."""
    shard = read_manifest(open_location(str(dataset)), "mujoco-hopper").shards[0]
    return PublishFile(shard.path, shard.num_bytes, shard.sha256, source=shard.path)


def _hub_target(branch: str | None = None) -> HubTarget:
    target = HubTarget(REPO, branch, private=False, xet=False)
    target.check()
    target.prepare()
    return target


def test_a_generated_file_carries_its_size_and_sha256():
    file = PublishFile.generated("README.md", b"hello\n")
    assert (file.path, file.size, file.data, file.source) == ("README.md", 6, b"hello\n", None)
    assert file.sha256 == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"


def test_git_blob_oid_is_gits_object_id():
    # `printf 'hello\n' | git hash-object --stdin` and `git hash-object /dev/null`
    assert git_blob_oid(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_oid(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


# --- a folder -------------------------------------------------------------------------------------
def test_a_folder_receives_files_and_shards_and_answers_from_what_it_holds(sample_dataset, tmp_path):
    source = open_location(str(sample_dataset))
    shard = _shard(sample_dataset)
    card = PublishFile.generated("README.md", b"# card\n")
    target = FolderTarget(str(tmp_path / "out"))
    target.check()
    target.prepare()
    assert not target.unchanged(card) and target.read("README.md") is None

    target.apply([card, shard], [], "first", source)
    assert (tmp_path / "out" / shard.path).read_bytes() == (sample_dataset / shard.path).read_bytes()
    assert target.unchanged(card) and target.unchanged(shard)
    assert target.read("README.md") == b"# card\n"
    assert target.paths_under("data/") == [shard.path]

    # a fresh target (the next publish) sees the same, and notices same-size content that differs
    again = FolderTarget(str(tmp_path / "out"))
    again.prepare()
    assert again.paths_under("") == sorted(["README.md", shard.path])
    assert again.unchanged(card) and not again.unchanged(PublishFile.generated("README.md", b"# CARD\n"))

    again.apply([], [shard.path], "drop the shard", source)
    assert not (tmp_path / "out" / shard.path).exists() and again.paths_under("data/") == []
    assert again.tag(INFO) is None  # a folder has no tags
    again.close()
    assert not (tmp_path / "out" / ".tmp").exists()


def test_a_shard_that_changed_since_validation_is_refused_and_nothing_lands(sample_dataset, tmp_path):
    shard = _shard(sample_dataset)
    stale = PublishFile(shard.path, shard.size, "0" * 64, source=shard.source)
    target = FolderTarget(str(tmp_path / "out"))
    target.prepare()
    with pytest.raises(PipelineError) as info:
        target.apply([stale], [], "publish", open_location(str(sample_dataset)))
    assert str(info.value) == (
        f"{shard.path} changed while publishing (sha256 differs from its manifest): "
        "re-run `pipeline validate`, then publish again"
    )
    assert not (tmp_path / "out" / shard.path).exists()
    assert list((tmp_path / "out" / ".tmp").iterdir()) == []  # the partial copy was deleted


def test_leftover_temporary_files_are_not_part_of_the_published_layout(tmp_path):
    (tmp_path / "out" / ".tmp").mkdir(parents=True)
    (tmp_path / "out" / ".tmp" / "abc-README.md").write_bytes(b"partial")
    (tmp_path / "out" / "README.md").write_bytes(b"done")
    target = FolderTarget(str(tmp_path / "out"))
    target.prepare()
    assert target.paths_under("") == ["README.md"]


def test_a_file_given_as_the_folder_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    target = FolderTarget(str(tmp_path / "taken"))
    with pytest.raises(PipelineError, match=r"^--to-folder .*taken is a file: give a folder$"):
        target.check()


# --- the Hub --------------------------------------------------------------------------------------
@pytest.mark.hub
def test_a_hub_repo_is_created_committed_to_and_read_back(sample_dataset, hub):
    source = open_location(str(sample_dataset))
    shard = _shard(sample_dataset)
    card = PublishFile.generated("README.md", b"# card\n")
    target = _hub_target()
    assert target.name == f"{hub.url}/datasets/{REPO}"
    assert target.paths_under("") == [".gitattributes"]  # the new repo's initial commit
    assert not target.unchanged(card) and target.read("README.md") is None

    target.apply([card, shard], [], "Publish mujoco-hopper", source)
    assert target.head == hub.head(REPO)
    assert [c["title"] for c in hub.history(REPO)] == ["Publish mujoco-hopper", "initial commit"]
    files = hub.files(REPO)
    assert files[shard.path]["lfs"] and files[shard.path]["sha256"] == shard.sha256
    assert hub.read(REPO, "README.md") == b"# card\n"

    again = _hub_target()  # the next publish lists what is there: nothing needs uploading
    assert again.unchanged(card) and again.unchanged(shard)
    assert not again.unchanged(PublishFile.generated("README.md", b"# CARD\n"))  # same size, other bytes
    assert again.read("README.md") == b"# card\n"
    assert again.paths_under("data/") == [shard.path]
    again.apply([], [shard.path], "Remove a stale shard", source)
    assert shard.path not in hub.files(REPO)
    again.close()


@pytest.mark.hub
def test_the_format_tag_follows_the_latest_finished_publish(hub):
    target = _hub_target()
    first = target.head
    assert target.tag(INFO) == TAG
    assert target.tag(INFO) == TAG  # already there: nothing changes
    refs = HfApi(endpoint=hub.url, token=hub.token).list_repo_refs(REPO, repo_type="dataset")
    assert [(t.name, t.target_commit) for t in refs.tags] == [(TAG, first)]

    target.apply([PublishFile.generated("a.txt", b"a")], [], "more", open_location("/"))
    assert target.head != first
    assert target.tag(INFO) == TAG
    refs = HfApi(endpoint=hub.url, token=hub.token).list_repo_refs(REPO, repo_type="dataset")
    assert [(t.name, t.target_commit) for t in refs.tags] == [(TAG, target.head)]  # moved, not doubled


@pytest.mark.hub
def test_a_side_branch_gets_its_own_tag_and_leaves_main_alone(hub):
    target = _hub_target("preview")
    assert target.name == f"{hub.url}/datasets/{REPO}@preview"
    target.apply([PublishFile.generated("a.txt", b"a")], [], "preview data", open_location("/"))
    assert target.tag(INFO) == f"{TAG}-preview"
    assert "a.txt" in hub.files(REPO, "preview") and "a.txt" not in hub.files(REPO, "main")


@pytest.mark.hub
def test_a_commit_on_a_moved_branch_is_refused_not_overwritten(hub):
    target = _hub_target()
    HfApi(endpoint=hub.url, token=hub.token).create_commit(
        REPO, [CommitOperationAdd("other.txt", b"theirs")], commit_message="someone else", repo_type="dataset"
    )
    with pytest.raises(PipelineError) as info:
        target.apply([PublishFile.generated("mine.txt", b"mine")], [], "mine", open_location("/"))
    message = str(info.value)
    assert message.startswith(f"commit 'mine' to {REPO} on {hub.url} failed (HTTP 412: ")
    assert message.endswith("another upload moved the branch meanwhile: re-run to publish on top of it")
    assert "mine.txt" not in hub.files(REPO) and hub.token not in message


@pytest.mark.hub
def test_a_failed_commit_leaves_the_branch_and_says_rerun(hub):
    target = _hub_target()
    before = hub.head(REPO)
    hub.fail("commit")
    with pytest.raises(PipelineError) as info:
        target.apply([PublishFile.generated("a.txt", b"a")], [], "data", open_location("/"))
    assert "(HTTP 500: " in str(info.value)
    assert str(info.value).endswith(
        "re-run the same command: committed files are kept and skipped, nothing is duplicated"
    )
    assert hub.head(REPO) == before and target.head == before


@pytest.mark.hub
def test_token_problems_are_refused_before_any_request_that_writes(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PipelineError) as info:
        HubTarget(REPO, None, private=False, xet=False).check()
    assert str(info.value) == (
        f"the Hub at {hub.url} rejected the token from HF_TOKEN (HTTP 401): "
        "create a write token at https://huggingface.co/settings/tokens and set HF_TOKEN"
    )
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PipelineError, match=r"^no Hugging Face token: set HF_TOKEN"):
        HubTarget(REPO, None, private=False, xet=False).check()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PipelineError, match=r"^HF_HUB_OFFLINE is set: unset it to publish"):
        HubTarget(REPO, None, private=False, xet=False).check()
    assert hub.counts["create"] == 0


def test_an_unreachable_endpoint_names_itself_and_the_folder_alternative(tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", "hf_any")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(PipelineError) as info:
        HubTarget(REPO, None, private=False, xet=False).check()
    message = str(info.value)
    assert message.startswith(f"cannot reach the Hub at http://127.0.0.1:{port} (")
    assert message.endswith("publish to a local folder with --to-folder DIR")


@pytest.mark.parametrize(("repo", "branch"), [("no-slash", None), ("org/a--b", None), (REPO, "bad..branch")])
def test_malformed_names_are_refused_before_any_request(repo, branch):
    with pytest.raises(PipelineError, match=r"^(malformed repo id|invalid --revision)"):
        HubTarget(repo, branch, private=False, xet=False)


def test_the_sha256_of_a_generated_file_is_of_its_bytes():
    data = bytes(range(256)) * 3
    assert PublishFile.generated("x", data).sha256 == hashlib.sha256(data).hexdigest()
