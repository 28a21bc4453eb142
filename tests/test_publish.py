"""`pipeline publish` against a real local Hub-API server, with the real `huggingface_hub` client.

The server (tests/hub_server.py) stores real files and commit history on disk; the client is
pointed at it with HF_ENDPOINT and uploads through LFS (`xet=False` / HF_HUB_DISABLE_XET=1,
since the server has no Xet storage). Round trips load the data back with `datasets` in a fresh
process through the same endpoint, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hub_server import HubServer
from huggingface_hub import CommitOperationAdd, HfApi, constants
from huggingface_hub.errors import RepositoryNotFoundError
from publish_helpers import CONFIGS, LOAD_SCRIPT, copy_configs, local_digests

from pipeline.checks.validate import validate
from pipeline.cli import main
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError, ValidationFailed
from pipeline.format.manifest import read_manifest
from pipeline.format.schema import FORMAT_VERSION
from pipeline.release.publish import PublishConfig, publish
from pipeline.runtime.storage import open_location

pytestmark = pytest.mark.hub
REPO = "jat-org/jat-small"
KILLED = ("babyai-go-to", "mujoco-hopper")  # the resume tests use two configs: two shards each
TAG = f"jat-format-v{FORMAT_VERSION}"


@pytest.fixture
def dataset(sample_dataset: Path) -> Path:
    """conftest's four-task dataset (read-only)."""
    return sample_dataset


def _env(server: HubServer, tmp_path: Path, token: str | None = None) -> dict[str, str]:
    """Environment of a user process talking to the server (fresh HF cache, LFS uploads)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return env | {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": token or server.token,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "MPLBACKEND": "Agg",
    }


def _load_back(server: HubServer, tmp_path: Path, repo: str, configs: tuple[str, ...]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, repo, *configs],
        env=_env(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _publish(dataset: Path, **kwargs: object):
    """Without clips unless asked (tests/test_publish_clips.py covers them; Meta-World's costs ~10 s)."""
    return publish(
        PublishConfig(
            str(dataset), **{"repo_id": REPO, "xet": False, "progress": False, "clips": False, **kwargs}
        )
    )


def _card(server: HubServer) -> tuple[dict, str]:
    text = server.read(REPO, "README.md").decode()
    _, header, body = text.split("---", 2)
    return yaml.safe_load(header), body


def test_publish_round_trip_through_datasets(dataset: Path, hub: HubServer, tmp_path: Path) -> None:
    started = time.monotonic()
    summary = _publish(dataset)
    published = time.monotonic() - started
    files = hub.files(REPO)
    for config in CONFIGS:
        manifest = read_manifest(open_location(str(dataset)), config)
        for shard in manifest.shards:  # every shard is on the remote, as LFS, with the manifest's checksum
            assert files[shard.path]["sha256"] == shard.sha256 and files[shard.path]["lfs"]
        for name in ("manifest.json", "stats.json", "returns.png"):
            assert f"meta/{config}/{name}" in files
    assert {f"meta/plots/{s}.png" for s in ("babyai", "metaworld", "mujoco")} <= set(files)
    header, body = _card(hub)
    assert [c["config_name"] for c in header["configs"]] == sorted(CONFIGS)
    assert header["license"] == "apache-2.0" and header["task_categories"] == ["reinforcement-learning"]
    assert f'load_dataset("jat-org/jat-small", "{CONFIGS[0]}")' in body and "meta/plots/mujoco.png" in body
    quality = body[body.index("## Quality against JAT's experts") :]
    assert all(f"| {config} |" in quality for config in CONFIGS)  # the published card scores every config
    stats = json.loads(hub.read(REPO, "meta/mujoco-hopper/stats.json"))
    assert len(stats["splits"]["train"]["features"]["continuous_observations"]["mean"]) == 11
    # everything fits the default limits (100 files, 1 GiB): one commit, the card in it
    assert [c["title"] for c in hub.history(REPO)] == [
        f"Publish {', '.join(CONFIGS)}, the dataset card",
        "initial commit",
    ]
    assert summary.commits == 1 and summary.uploaded_bytes == sum(
        e["size"] for p, e in files.items() if p != ".gitattributes"
    )

    started = time.monotonic()
    loaded = _load_back(hub, tmp_path, REPO, CONFIGS)
    print(
        f"\npublish {summary.uploaded_bytes / 1e6:.2f} MB in {published:.2f} s "
        f"({summary.throughput_mb_s:.1f} MB/s upload); load back {time.monotonic() - started:.2f} s"
    )
    for config in CONFIGS:
        assert loaded[config] == local_digests(dataset, config), config


def test_rerun_after_success_changes_nothing(dataset: Path, hub: HubServer) -> None:
    _publish(dataset, configs=("mujoco-hopper",))
    head, commits, uploads = hub.head(REPO), len(hub.history(REPO)), hub.counts["lfs-upload"]
    again = _publish(dataset, configs=("mujoco-hopper",))
    assert (again.commits, again.uploaded_files, again.deleted_files) == (0, 0, 0)
    assert again.unchanged_files > 0
    assert hub.head(REPO) == head and len(hub.history(REPO)) == commits
    assert hub.counts["lfs-upload"] == uploads and hub.counts["commit"] == commits - 1


def _tags(server: HubServer) -> dict[str, str]:
    """The repo's tags as the real client lists them: name -> commit."""
    refs = HfApi(endpoint=server.url, token=server.token).list_repo_refs(REPO, repo_type="dataset")
    return {t.name: t.target_commit for t in refs.tags}


def test_publish_tags_its_head_with_the_format_version_and_moves_the_tag(
    dataset: Path, hub: HubServer, tmp_path: Path
) -> None:
    first = _publish(dataset, configs=("mujoco-hopper",))
    assert first.tag == TAG and _tags(hub) == {TAG: hub.head(REPO)} == {TAG: first.head}
    info = json.loads(hub.read(REPO, "meta/info.json"))
    assert info["format_version"] == FORMAT_VERSION and info["configs"] == ["mujoco-hopper"]
    assert hub.files(REPO, TAG) == hub.files(REPO)  # the tag is a revision like any other
    again = _publish(dataset, configs=("mujoco-hopper",))  # nothing new: the tag is left alone
    assert again.commits == 0 and again.tag == TAG and _tags(hub) == {TAG: first.head}
    assert (hub.counts["tag"], hub.counts["delete-tag"]) == (1, 0)

    later = copy_configs(dataset, tmp_path / "later", ("babyai-go-to",))
    hub.fail("commit", after=1)  # a multi-commit publish of new data, interrupted after its first commit
    with pytest.raises(PipelineError, match="re-run the same command"):
        _publish(later, max_commit_files=1)
    assert hub.head(REPO) != first.head and _tags(hub) == {TAG: first.head}  # never on a partial publish
    second = _publish(later)
    assert second.commits == 1 and second.head == hub.head(REPO)
    assert _tags(hub) == {TAG: second.head} and hub.counts["delete-tag"] == 1  # moved to the new head
    assert f"format v{FORMAT_VERSION}" in hub.store.tags("dataset", REPO)[TAG]["message"]
    assert json.loads(hub.read(REPO, "meta/info.json", revision=TAG))["configs"] == list(KILLED)


def test_a_publish_interrupted_before_tagging_is_tagged_by_its_rerun(dataset: Path, hub: HubServer) -> None:
    hub.fail("tag")
    with pytest.raises(PipelineError, match=f"tagging .* as {TAG} .*HTTP 500.*only sets the tag") as info:
        _publish(dataset, configs=("mujoco-hopper",))
    assert "README.md" in hub.files(REPO) and _tags(hub) == {}
    assert hub.token not in str(info.value)
    again = _publish(dataset, configs=("mujoco-hopper",))
    assert (again.commits, again.tag) == (0, TAG) and _tags(hub) == {TAG: hub.head(REPO)}


def _assert_complete(hub: HubServer, dataset: Path, configs: tuple[str, ...]) -> None:
    """Every shard present with its manifest checksum; no path was ever committed twice."""
    files = hub.files(REPO)
    for config in configs:
        for shard in read_manifest(open_location(str(dataset)), config).shards:
            assert files[shard.path]["sha256"] == shard.sha256
    touched = [p for commit in hub.history(REPO) for p in commit["changed"]]
    assert len(touched) == len(set(touched)), "a file was uploaded in two commits"
    lfs_blobs = {e["sha256"] for e in files.values() if e["lfs"]}
    assert hub.counts["lfs-upload"] == len(lfs_blobs), "an LFS object was uploaded twice"


def test_failed_commit_leaves_previous_revision_and_rerun_resumes(dataset: Path, hub: HubServer) -> None:
    hub.fail("commit", after=2)  # the third commit of the run answers 500
    with pytest.raises(PipelineError, match="re-run the same command"):
        _publish(dataset, max_commit_files=1, configs=KILLED)
    shards = [s.path for s in read_manifest(open_location(str(dataset)), KILLED[0]).shards]
    assert sorted(hub.files(REPO)) == sorted([".gitattributes", *shards])  # the first two commits, no more
    assert "README.md" not in hub.files(REPO)  # the failed commit left the branch where it was
    summary = _publish(dataset, max_commit_files=1, configs=KILLED)
    assert summary.unchanged_files == 2  # the two committed shards are not sent again
    _assert_complete(hub, dataset, KILLED)


def test_a_concurrent_writer_is_detected_not_overwritten(dataset: Path, hub: HubServer) -> None:
    def other_writer(n: int) -> None:  # right after our first commit, someone else commits to main
        if n == 1:
            head = hub.store.resolve("dataset", REPO, "main")
            hub.store.commit("dataset", REPO, "main", head["files"], "someone else", "", None)

    hub.on("commit", other_writer)
    with pytest.raises(PipelineError, match="another upload moved the branch"):
        _publish(dataset, max_commit_files=2, configs=("mujoco-hopper",))
    assert hub.history(REPO)[0]["title"] == "someone else"
    hub._hooks.clear()
    _publish(dataset, max_commit_files=2, configs=("mujoco-hopper",))  # a re-run publishes on top of it
    assert "README.md" in hub.files(REPO)


def test_killed_upload_resumes_without_duplicates_and_never_leaks_token(
    dataset: Path, hub: HubServer, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "-v",
        "publish",
        str(dataset),
        "--repo-id",
        REPO,
        "--no-xet",
        "--no-progress",
        "--max-commit-files",
        "1",
        "--configs",
        ",".join(KILLED),
    ]
    running: dict[str, subprocess.Popen] = {}

    def kill(n: int) -> None:
        if n == 3:
            running["proc"].send_signal(signal.SIGKILL)

    hub.on("lfs-upload", kill)
    running["proc"] = subprocess.Popen(
        command, env=_env(hub, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out1, err1 = running["proc"].communicate(timeout=300)
    assert running["proc"].returncode == -signal.SIGKILL
    assert "README.md" not in hub.files(REPO)
    hub._hooks.clear()
    done = subprocess.run(command, env=_env(hub, tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_complete(hub, dataset, KILLED)
    assert f"the card lists {len(KILLED)} config(s)" in done.stdout
    assert "meta/babyai-go-to/episode.gif" in hub.files(REPO)  # the CLI draws clips (BabyAI's needs no GL)
    for text in (out1, err1, done.stdout, done.stderr):
        assert hub.token not in text
    for root in (dataset, tmp_path):  # the dataset, the HF cache of the runs, the server's storage
        for path in Path(root).rglob("*"):
            if path.is_file():
                assert hub.token.encode() not in path.read_bytes(), path


def test_adding_a_config_keeps_the_others(dataset: Path, hub: HubServer, tmp_path: Path) -> None:
    _publish(dataset, configs=("mujoco-hopper",))
    before = {p: e for p, e in hub.files(REPO).items() if "mujoco" in p}
    commits = len(hub.history(REPO))
    later = copy_configs(dataset, tmp_path / "later", ("babyai-go-to",))  # a separate dataset without hopper
    summary = _publish(later)
    assert summary.configs == ["babyai-go-to"] and summary.card_configs == ["babyai-go-to", "mujoco-hopper"]
    after = hub.files(REPO)
    assert {p: after[p] for p in before} == before  # hopper's shards, stats and figures untouched
    for commit in hub.history(REPO)[: len(hub.history(REPO)) - commits]:
        assert not [p for p in commit["changed"] + commit["deleted"] if "mujoco" in p], commit["title"]
    header, body = _card(hub)
    assert [c["config_name"] for c in header["configs"]] == ["babyai-go-to", "mujoco-hopper"]
    assert "### mujoco-hopper" in body and "### babyai-go-to" in body
    assert "meta/plots/mujoco.png" in body  # the untouched suite's figure stays linked


def test_stale_remote_shards_are_removed_with_the_new_manifest(dataset: Path, hub: HubServer) -> None:
    _publish(dataset, configs=("mujoco-hopper",))
    api = HfApi(endpoint=hub.url, token=hub.token)
    stale = "data/mujoco-hopper/train-00009.parquet"  # e.g. left by an earlier, larger rollout
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the server has no Xet storage
        api.create_commit(
            REPO,
            [CommitOperationAdd(stale, dataset / "data/mujoco-hopper/train-00000.parquet")],
            commit_message="older rollout",
            repo_type="dataset",
        )
    summary = _publish(dataset, configs=("mujoco-hopper",))
    assert summary.deleted_files == 1 and stale not in hub.files(REPO)
    assert hub.history(REPO)[0]["deleted"] == [stale]


def test_private_repo_on_a_branch_with_the_login_cache_token(
    dataset: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    cache = tmp_path / "login" / "token"  # what `hf auth login` writes
    cache.parent.mkdir()
    cache.write_text(hub.token)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache))
    _publish(dataset, configs=("mujoco-hopper",), private=True, revision="v1")
    assert hub.store.repo("dataset", REPO)["private"]
    assert set(hub.files(REPO, "main")) == {".gitattributes"}
    assert "README.md" in hub.files(REPO, "v1")
    assert _tags(hub) == {f"{TAG}-v1": hub.head(REPO, "v1")}  # the branch's own tag: main's is untouched
    anonymous = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.dataset_info(REPO)


def test_to_folder_is_the_default_and_loads(dataset: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    source = copy_configs(dataset, tmp_path / "ds", ("metaworld-reach",))
    summary = publish(PublishConfig(str(source), progress=False, clips=False))
    folder = tmp_path / "ds-publish"
    assert summary.target == str(folder) and (folder / "README.md").is_file() and summary.tag is None
    assert validate(ValidateConfig(str(folder))).ok
    loaded = load_dataset(str(folder), "metaworld-reach")
    totals = read_manifest(open_location(str(source)), "metaworld-reach").totals()
    assert loaded["train"].num_rows == totals["train"]["episodes"] and loaded["test"].num_rows == 1
    again = publish(PublishConfig(str(source), progress=False, clips=False))
    assert again.uploaded_files == 0 and again.unchanged_files == summary.uploaded_files
    card = (folder / "README.md").read_text()
    assert 'load_dataset("ds-publish", "metaworld-reach")' in card and str(tmp_path) not in card  # relative


def test_folder_publishing_speaks_of_a_folder(dataset: Path, tmp_path: Path, capsys, caplog) -> None:
    """No uploads, MB/s or commits for files written to a folder."""
    source = copy_configs(dataset, tmp_path / "ds", ("metaworld-reach",))
    with caplog.at_level("INFO"):
        code = main(
            ["publish", str(source), "--to-folder", str(tmp_path / "out"), "--no-clips", "--no-progress"]
        )
    assert code == 0
    said = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    assert f"wrote metaworld-reach to the folder {tmp_path / 'out'}" in said and "file(s) written" in said
    assert not any(word in said.lower() for word in ("upload", "mb/s", "commit")), said


@pytest.mark.parametrize(
    ("repo_id", "message"),
    [
        ("no-slash", "malformed repo id"),
        ("a/b/c", "malformed repo id"),
        ("org--x/name", "malformed repo id"),
        ("jat-org/", "malformed repo id"),
    ],
)
def test_malformed_repo_id(dataset: Path, repo_id: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        PublishConfig(str(dataset), repo_id=repo_id)


def _bad(dataset: Path, hub: HubServer, match: str, **kwargs: object) -> PipelineError:
    with pytest.raises(PipelineError, match=match) as info:
        _publish(dataset, **kwargs)
    assert hub.counts["commit"] == 0 and hub.counts["lfs-upload"] == 0
    assert hub.token not in str(info.value)
    return info.value


def test_bad_tokens_endpoint_and_names_publish_nothing(
    dataset: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value")
    error = _bad(dataset, hub, "rejected the token from HF_TOKEN")
    assert "hf_wrong_token_value" not in str(error)
    monkeypatch.delenv("HF_TOKEN")
    _bad(dataset, hub, "no Hugging Face token")
    monkeypatch.setenv("HF_TOKEN", hub.token)
    _bad(dataset, hub, "no config mujoco-ant", configs=("mujoco-ant",))
    _bad(dataset, hub, "no config not-a-task", configs=("not-a-task",))
    _bad(dataset, hub, "rights to write to someone-else", repo_id="someone-else/data")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _bad(dataset, hub, "HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with HubServer(tmp_path / "gone") as gone:
        url = gone.url
    monkeypatch.setenv("HF_ENDPOINT", url)  # nothing listens there any more
    _bad(dataset, hub, "cannot reach the Hub")
    assert hub.head(REPO) is None  # no repo was even created


def test_invalid_subset_is_refused(dataset: Path, hub: HubServer, tmp_path: Path) -> None:
    broken = copy_configs(dataset, tmp_path / "broken", ("babyai-go-to", "mujoco-hopper"))
    shard = broken / "data/mujoco-hopper/train-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValidationFailed, match=r"mujoco-hopper.*sha256"):
        _publish(broken)
    assert hub.head(REPO) is None and hub.counts["lfs-upload"] == 0


@pytest.fixture
def s3_dataset(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two configs of the sample dataset copied to a real S3 server (moto) on 127.0.0.1."""
    import boto3
    import pyarrow.fs as pafs

    with socket.socket() as probe:  # a free port for moto
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }.items():
        monkeypatch.setenv(key, value)
    for _ in range(100):
        try:
            boto3.client("s3").create_bucket(Bucket="jat")
            break
        except Exception:  # the server is still starting
            time.sleep(0.1)
    local = copy_configs(dataset, tmp_path / "local", KILLED)
    pafs.copy_files(
        str(local),
        "jat/ds",
        destination_filesystem=pafs.S3FileSystem(
            endpoint_override=f"http://127.0.0.1:{port}", scheme="http", region="us-east-1"
        ),
    )
    yield "s3://jat/ds"
    server.terminate()
    server.wait()


@pytest.mark.s3
def test_publish_from_an_s3_dataset(s3_dataset: str, dataset: Path, hub: HubServer) -> None:
    summary = _publish(s3_dataset)
    assert summary.configs == list(KILLED)
    _assert_complete(hub, dataset, KILLED)
