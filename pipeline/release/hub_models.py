"""Hub model repos: publish a folder's files to one (resumably), and download experts and models back.

Publishing reuses the dataset publisher's Hub target (`pipeline.release.publish_targets.HubTarget`, here
with `repo_type = "model"`) and folder target: the same token checks, the same sha256 comparison
against the repo's tree, so a re-run uploads only the files whose content changed, in one atomic
commit per repo. Small files travel as bytes (the Hub stores them as plain git files, compared by
git blob id); large ones are streamed from their folder with their sha256 (stored as LFS).

Downloading uses `huggingface_hub.snapshot_download` into a local folder:
- `hf://ORG/PREFIX` as an experts dir (`pipeline rollout --experts-dir`) is the store whose
  <config>/ folder is the model repo ORG/PREFIX-<config>, fetched on first use into a cache
  folder under HF_HOME (`expert_store_root`); a config without a repo is a config without an expert.
- `pipeline evaluate --model ORG/NAME` fetches a published model when ORG/NAME is no local folder.

The endpoint is HF_ENDPOINT read at call time (as the publisher does), and the token comes from
`huggingface_hub` itself; it never appears in a message or a log line.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from pipeline.configs.publish import REPO_ID
from pipeline.configs.release_hub import HF_SCHEME, expert_repo_id
from pipeline.errors import PipelineError
from pipeline.release.publish_targets import FolderTarget, HubTarget, PublishFile, Target
from pipeline.runtime.storage import Location

log = logging.getLogger(__name__)

INLINE_BYTES = 1 << 20
"""Files up to this size are read and sent as bytes (compared by git blob id on a re-run)."""


class ModelRepoTarget(HubTarget):
    """A model repo on the Hub: the dataset target's checks, listing, comparison and commits."""

    repo_type = "model"

    def __init__(self, repo_id: str, private: bool, xet: bool) -> None:
        super().__init__(repo_id, None, private, xet)


@dataclass(frozen=True)
class PushResult:
    """What one repo's push did."""

    target: str
    uploaded: tuple[str, ...]
    """Paths committed (new or changed); empty when the repo was up to date."""
    uploaded_bytes: int
    unchanged: int
    deleted: tuple[str, ...]


def repo_file(location: Location, relative: str, path: str | None = None) -> PublishFile:
    """A file of `location` as published at `path` (default: the same relative path)."""
    info = location.fs.get_file_info(location.path(relative))
    if info.size <= INLINE_BYTES:
        return PublishFile.generated(path or relative, location.read_bytes(relative))
    return PublishFile(path or relative, info.size, location.sha256(location.path(relative)), source=relative)


def folder_files(location: Location, relative: str, prefix: str) -> list[PublishFile]:
    """Every file under `relative` of `location`, published under `prefix` (sub-folders kept)."""
    base = location.path(relative).rstrip("/")
    out = []
    for info in location.list(relative, recursive=True):
        if info.type.name != "File" or "/.tmp" in info.path or "/." in info.path[len(base) :]:
            continue
        inside = info.path[len(base) + 1 :]
        out.append(repo_file(location, f"{relative}/{inside}", f"{prefix}/{inside}"))
    return sorted(out, key=lambda f: f.path)


def push(
    target: Target, files: list[PublishFile], managed: tuple[str, ...], message: str, source: Location
) -> PushResult:
    """Bring `target` (checked and prepared) to `files`: one commit of what changed.

    Paths under the `managed` prefixes that `files` no longer has (a snapshot rotated away, a file
    renamed) are deleted in the same commit; anything else in the repo (a file the user added, a
    `pipeline render` clip published separately) is left alone.
    """
    changed = [f for f in files if not target.unchanged(f)]
    keep = {f.path for f in files}
    stale = sorted({p for prefix in managed for p in target.paths_under(prefix)} - keep)
    if changed or stale:
        target.apply(changed, stale, message, source)
    verb = "written" if isinstance(target, FolderTarget) else "uploaded"
    log.info(
        "%s: %d file(s) %s, %d unchanged, %d deleted",
        target.name,
        len(changed),
        verb,
        len(files) - len(changed),
        len(stale),
    )
    return PushResult(
        target.name,
        tuple(f.path for f in changed),
        sum(f.size for f in changed),
        len(files) - len(changed),
        tuple(stale),
    )


# --- downloads ---------------------------------------------------------------------------------
def endpoint() -> str:
    """The Hub endpoint, read now (huggingface_hub reads HF_ENDPOINT once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def download(
    repo_id: str, local_dir: str, allow: list[str] | None = None, ignore: list[str] | None = None
) -> str | None:
    """`snapshot_download` of a model repo into `local_dir`; None when there is no such repo.

    Files already there with the same content are not fetched again.
    """
    try:
        return snapshot_download(
            repo_id,
            repo_type="model",
            local_dir=local_dir,
            allow_patterns=allow,
            ignore_patterns=ignore,
            endpoint=endpoint(),
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        if isinstance(exc, GatedRepoError):
            raise PipelineError(
                f"{repo_id} on {endpoint()} is gated: accept its conditions on the Hub, then set HF_TOKEN"
            ) from None
        return None
    except LocalEntryNotFoundError:
        raise PipelineError(
            f"cannot download {repo_id} from {endpoint()} (offline, or the Hub is unreachable, and no "
            "copy is cached): unset HF_HUB_OFFLINE and check HF_ENDPOINT and the network"
        ) from None
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        cause = f"HTTP {status}" if status else type(exc).__name__
        raise PipelineError(
            f"downloading {repo_id} from {endpoint()} failed ({cause}): check HF_ENDPOINT, the network "
            "and HF_TOKEN for a private repo, then re-run"
        ) from None


def dataset_snapshot(repo_id: str, patterns: list[str], revision: str | None = None) -> str:
    """The files matching `patterns` of dataset repo `repo_id`, in the Hub cache (fetched once);
    the snapshot folder (`.../snapshots/<commit>`), whose name pins later downloads to that commit.

    Endpoint and cache are read from the environment at call time: huggingface_hub reads
    HF_ENDPOINT and HF_HOME once, at import, and would ignore a later setting. Used by
    `train-model --data ORG/NAME` and `pipeline.dataset.open_dataset("ORG/NAME")`."""
    home = os.environ.get("HF_HOME")
    cache = os.environ.get("HF_HUB_CACHE") or (os.path.join(home, "hub") if home else constants.HF_HUB_CACHE)
    try:
        return snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            allow_patterns=patterns,
            cache_dir=cache,
            endpoint=endpoint(),
        )
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise PipelineError(
            f"cannot load {repo_id}: no such folder, and no such dataset on the Hub "
            "(give a dataset folder, s3://bucket/prefix, or a Hub repo id ORG/NAME)"
        ) from None
    except LocalEntryNotFoundError:
        raise PipelineError(
            f"cannot load {repo_id}: no such folder, and the Hub is offline or unreachable "
            "(give a dataset folder, or unset HF_HUB_OFFLINE to read a Hub repo)"
        ) from None
    except OSError as exc:  # HTTP errors and connection failures
        raise PipelineError(f"cannot load {repo_id} from the Hub: {' '.join(str(exc).split())}") from None


def hub_cache_dir(*parts: str) -> str:
    """A folder under HF_HOME for files jat-pipeline downloads from the Hub."""
    home = os.environ.get("HF_HOME") or constants.HF_HOME
    return os.path.join(home, "jat-pipeline", *parts)


def expert_store_root(uri: str, config: str, history: bool = False) -> str:
    """The local experts dir standing for `hf://ORG/PREFIX`, with `config`'s expert fetched into it.

    `<root>/<config>/` is the model repo ORG/PREFIX-<config> (learning-history snapshots only when
    `history`); when that repo does not exist the folder is removed, so the store has no expert for
    the config and rollout applies its usual rules (the bot or scripted fallback, or a clear error).
    """
    prefix = uri[len(HF_SCHEME) :].strip("/")
    if not REPO_ID.fullmatch(prefix):
        raise PipelineError(
            f"--experts-dir {uri}: write hf://ORG/PREFIX, the --repo-prefix given to "
            "`pipeline publish-experts` (e.g. hf://my-org/jat-expert)"
        )
    root = hub_cache_dir("experts", *prefix.split("/"))
    _fetch_expert(endpoint(), root, expert_repo_id(prefix, config), config, history)
    return root


@functools.cache
def _fetch_expert(server: str, root: str, repo_id: str, config: str, history: bool) -> None:
    """Fetch one expert repo into `root/config`, once per process for the same server and cache:
    the policy factory asks for the store several times per task (the gate check, the metadata,
    the model), and every actor of a run should act with the same revision anyway. A failed fetch
    raises, and is not remembered."""
    local = os.path.join(root, config)
    if download(repo_id, local, ignore=None if history else ["history/*"]) is None:
        log.info("no expert repo %s on %s", repo_id, server)
        shutil.rmtree(local, ignore_errors=True)
    else:
        log.debug("%s fetched into %s", repo_id, local)
    os.makedirs(root, exist_ok=True)


def model_folder(name: str, files: list[str]) -> tuple[Path, str | None]:
    """A local folder holding the model `name`, and the repo id when it came from the Hub.

    `name` is a local folder when one exists there; otherwise, when it reads ORG/NAME, the model
    repo of that name, whose `files` are fetched into a cache folder under HF_HOME.
    """
    path = Path(name).expanduser()
    if path.exists() or not REPO_ID.fullmatch(name):
        return path, None
    local = hub_cache_dir("models", *name.split("/"))
    try:
        found = download(name, local, allow=files)
    except PipelineError as exc:
        raise PipelineError(f"no local folder {name}, and {exc}") from None
    if found is None:
        raise PipelineError(
            f"{name} is neither a local folder nor a model repo on {endpoint()}: give the folder "
            "train-model wrote, or the ORG/NAME of a model published with `pipeline publish-model`"
        )
    return Path(local), name
