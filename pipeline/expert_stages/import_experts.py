"""`pipeline import-experts`: released experts (JAT's sample-factory checkpoints) into an experts dir.

JAT's data scripts trained no expert: they rolled out released checkpoints. This stage brings those
into the store as first-class experts, so `rollout --policy expert`, `evaluate-experts`, the gate,
`report` and `publish-experts` use them unchanged. Two passes, so that bad input writes nothing:
1. for every task, resolve its repo (JAT's, from the registry's `expert_source`, or a template),
   fetch only the files needed (the config, the one checkpoint sample-factory would load, the card)
   pinned to the commit the revision resolves to, verify their sha256 against the Hub's, and check
   that the expert fits the task (`experts.released`); any failure stops here, naming each task;
2. install each into the store, evaluate and gate it, and write metadata.json last.

Downloads go through `huggingface_hub` into its cache (resumable: a killed download keeps its
complete files and starts the partial one again; offline re-runs read the cache). A local mirror
(`--source DIR`) holds `DIR/<org>/<name>/` as `hf download` leaves it, for clusters without the Hub.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from experts.base import get_backend
from experts.candidates import choose, evaluate_candidate, scripted_alternative, scripted_candidate
from experts.evaluation import judged
from experts.metadata import ExpertMetadata, ExpertStatus
from experts.released import (
    ReleasedModel,
    card_license,
    install,
    needed_files,
    sha256_of,
    version_note,
)
from experts.store import ExpertStore
from experts.training import FAILED, ExpertResult, env_spec_record, versions_of
from pipeline.configs.experts import ImportExpertsConfig
from pipeline.errors import PipelineError
from pipeline.release.hub_models import endpoint
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec, get_task, resolve_tasks

log = logging.getLogger(__name__)

JAT_REPO = re.compile(r"hf:\s*([\w.-]+/[\w.-]+)")
"""The repo in a registry `expert_source` ("hf: edbeeching/mujoco_hopper_1111 (...)")."""


@dataclass(frozen=True)
class Fetched:
    """One task's released files, local and checked: what pass 2 installs."""

    spec: TaskSpec
    repo: str
    folder: str
    """Local folder holding the repo's files (the Hub cache's snapshot, or the mirror's folder)."""
    files: tuple[str, ...]
    """The files read, relative to `folder`."""
    revision: str | None
    """The commit the revision resolved to (None for a mirror, which has no history)."""
    sha256: dict[str, str]


@dataclass
class ImportExpertsSummary:
    out: str
    results: list[ExpertResult]
    seconds: float

    @property
    def failed(self) -> list[ExpertResult]:
        return [r for r in self.results if r.status == FAILED]


def repo_for(spec: TaskSpec, template: str) -> str:
    """The released repo of `spec`: JAT's (`template == "jat"`) or the template filled in."""
    if template == "jat":
        found = JAT_REPO.search(spec.expert_source)
        if not found:
            raise PipelineError(
                f"JAT recorded {spec.config} without a released expert "
                f"({spec.expert_source or 'none named'}): its expert comes from `pipeline train-experts`"
            )
        return found[1]
    game = re.sub(r"-v\d+$", "", spec.env_id.rsplit("/", 1)[-1])
    try:
        return template.format(task=spec.task, config=spec.config, game=game)
    except (KeyError, IndexError, ValueError) as exc:
        raise PipelineError(
            f"--repo {template!r}: unknown placeholder {exc}; use {{task}}, {{config}} or {{game}}"
        ) from None


def _hub_files(repo: str, revision: str | None) -> tuple[str, list[str], dict[str, str]]:
    """The commit `revision` resolves to, the repo's files there, and the sha256 of its LFS files."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE:
        raise OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        raise PipelineError(f"{repo} has no revision {revision!r} on {endpoint()}") from None
    except RepositoryNotFoundError:
        raise PipelineError(
            f"no repo {repo} on {endpoint()} (private, or a wrong name): check --repo and HF_TOKEN"
        ) from None
    files = [s.rfilename for s in info.siblings or []]
    lfs = {s.rfilename: s.lfs.sha256 for s in info.siblings or [] if s.lfs is not None}
    return str(info.sha), files, lfs


def _cached_snapshot(repo: str, revision: str | None, cache: str) -> str:
    """The cache's snapshot folder of `repo` at `revision`: `models--ORG--NAME/refs/<revision>` names
    the commit, `snapshots/<commit>/` holds the files (huggingface_hub's documented cache layout)."""
    root = os.path.join(cache, "models--" + repo.replace("/", "--"))
    commit = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else None
    ref = os.path.join(root, "refs", revision or "main")
    if commit is None and os.path.isfile(ref):
        with open(ref) as f:
            commit = f.read().strip()
    folder = os.path.join(root, "snapshots", commit or "-")
    if not os.path.isdir(folder):
        raise PipelineError(
            f"cannot reach {endpoint()} for {repo} and no copy is cached: unset HF_HUB_OFFLINE, "
            "check HF_ENDPOINT, or give a mirror with --source DIR"
        )
    return folder


def _from_hub(spec: TaskSpec, repo: str, config: ImportExpertsConfig) -> Fetched:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"
    )
    try:
        commit, listing, expected = _hub_files(repo, config.revision)
        wanted = needed_files(listing, config.checkpoint)
        # By the revision's name, so the cache records where it points for an offline re-run;
        # the snapshot's folder is named by the commit it resolved to, checked against the listing's.
        folder = snapshot_download(
            repo, revision=config.revision, allow_patterns=wanted, cache_dir=cache, endpoint=endpoint()
        )
        if os.path.basename(folder) != commit:
            raise PipelineError(
                f"{repo} changed while it was being imported ({commit[:12]} became "
                f"{os.path.basename(folder)[:12]}): re-run, or pin --revision to a commit"
            )
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):
        folder = _cached_snapshot(repo, config.revision, cache)  # offline: what an earlier import fetched
        commit, expected = os.path.basename(folder), {}
        listing = [
            os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
            for d, _, names in os.walk(folder)
            for f in names
        ]
        wanted = needed_files(listing, config.checkpoint)
    except OSError as exc:  # HTTP errors and broken connections
        raise PipelineError(
            f"downloading {repo} from {endpoint()} failed ({' '.join(str(exc).split())[:200]}): re-run "
            "to resume; complete files are not fetched again"
        ) from None
    sha256 = {name: sha256_of(os.path.join(folder, name)) for name in wanted}
    for name, digest in sha256.items():
        if name in expected and expected[name] != digest:
            raise PipelineError(
                f"{repo}/{name} in the cache does not match the Hub's sha256 (a damaged download): delete "
                f"{os.path.join(folder, name)} and re-run"
            )
    return Fetched(spec, repo, folder, tuple(wanted), commit, sha256)


def _from_mirror(spec: TaskSpec, repo: str, config: ImportExpertsConfig) -> Fetched:
    folder = os.path.join(config.source, *repo.split("/"))
    if not os.path.isdir(folder):
        raise PipelineError(
            f"no {repo} in the mirror {config.source} (expected the folder {folder}, as "
            f"`hf download {repo} --local-dir {folder}` leaves it)"
        )
    listing = [
        os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
        for d, _, names in os.walk(folder)
        for f in names
    ]
    wanted = needed_files(listing, config.checkpoint)
    sha256 = {name: sha256_of(os.path.join(folder, name)) for name in wanted}
    return Fetched(spec, repo, folder, tuple(wanted), None, sha256)


def _check(fetched: Fetched, config: ImportExpertsConfig) -> ReleasedModel:
    """Install into a scratch folder: every check of pass 1, nothing written to the store."""
    with tempfile.TemporaryDirectory(prefix="jat-import-") as scratch:
        return install(fetched.folder, list(fetched.files), fetched.spec, scratch, config.checkpoint)


def _metadata(fetched: Fetched, model: ReleasedModel, config: ImportExpertsConfig) -> ExpertMetadata:
    spec = fetched.spec
    backend = get_backend(model.backend)
    where = endpoint() if config.source == "jat" else os.path.abspath(config.source)
    return ExpertMetadata(
        config=spec.config,
        suite=spec.suite,
        backend=backend.name,
        status=ExpertStatus.UNEVALUATED,
        trained=True,
        algo=model.algo,
        versions=versions_of(backend.versions()),
        hyperparameters=model.hyperparameters,
        deterministic=(
            spec.expert.released_deterministic if model.deterministic is None else model.deterministic
        ),
        env_spec=env_spec_record(spec),
        steps_target=model.steps,
        steps_trained=model.steps,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source={
            "repo": fetched.repo,
            "revision": fetched.revision,
            "from": where,
            "framework": model.framework,
            "framework_version": model.framework_version,
            **({"system_info": model.system_info} if model.system_info else {}),
            "trained_on": model.env,
            "trained_env_id": model.trained_env_id,
            "acts_on": spec.env_name or spec.env_id,
            "checkpoint": model.checkpoint,
            "files": fetched.sha256,
            "license": card_license(fetched.folder),
        },
    )


def _judge(metadata: ExpertMetadata, policy: Policy, config: ImportExpertsConfig) -> ExpertMetadata:
    """Evaluate and gate the imported expert; where the task has a scripted policy (Meta-World, whose
    released experts acted in v2 envs and are scored here on v3), score it on the same seeds and keep
    the better, as `train-experts` does with a trained one (`experts.candidates`)."""
    spec = get_task(metadata.config)
    episodes = config.eval_episodes or spec.expert.eval_episodes
    threshold = config.threshold if config.threshold is not None else spec.expert.threshold
    imported = evaluate_candidate(metadata.backend, policy, spec, episodes, config.seed, threshold)
    alternative = scripted_alternative(spec)
    if alternative is None:
        return judged(metadata, imported.evaluation, imported.decision)
    choice = choose(imported, scripted_candidate(alternative, spec, episodes, config.seed, threshold))
    log.info("%s: keeps %s: %s", spec.config, choice.chosen.backend, choice.reason)
    kept = judged(metadata, choice.chosen.evaluation, choice.chosen.decision)
    return replace(kept, **choice.record())


def _install(store: ExpertStore, fetched: Fetched, config: ImportExpertsConfig) -> ExpertResult:
    spec = fetched.spec
    staged = store.stage(spec.config, resume=False)
    if os.path.isdir(staged.model_dir):
        shutil.rmtree(staged.model_dir)
    model = install(fetched.folder, list(fetched.files), spec, staged.model_dir, config.checkpoint)
    metadata = _metadata(fetched, model, config)
    note = version_note(model.trained_env_id, spec)
    if note:
        log.warning(note)
    result = ExpertResult(spec.config, metadata.backend, ExpertStatus.UNEVALUATED, model.steps, 0.0)
    if config.evaluate:
        metadata = _judge(
            metadata, get_backend(metadata.backend).load(staged.model_dir, spec, metadata), config
        )
        kept = metadata.acting_backend
        result = replace(result, status=metadata.status, evaluation=metadata.evaluation or {})
        result.chosen = kept if kept != metadata.backend else ""
    store.publish(staged)
    store.write_metadata(spec.config, metadata)  # last: a folder with metadata.json holds an expert
    log.info("%s: imported from %s (%s)", spec.config, fetched.repo, result.status)
    return result


def _imported_before(spec: TaskSpec, metadata: ExpertMetadata | None, config: ImportExpertsConfig) -> bool:
    """The store holds the expert this import would write (metadata.json is written last, so it is whole)."""
    if metadata is None or not metadata.source:
        return False
    try:
        repo = repo_for(spec, config.repo)
    except PipelineError:
        return False
    same_revision = config.revision is None or metadata.source.get("revision") in (config.revision, None)
    return metadata.source.get("repo") == repo and same_revision


def import_experts(config: ImportExpertsConfig) -> ImportExpertsSummary:
    """Fetch and check every task's released expert, then store, evaluate and gate each."""
    started = time.monotonic()
    specs = resolve_tasks(config.suite, list(config.tasks) or None)
    mirror = config.source != "jat"
    if mirror and not os.path.isdir(config.source):
        raise PipelineError(
            f"--source {config.source}: no such folder; give `jat` (the Hub) or a mirror folder "
            "holding DIR/<org>/<name>/"
        )
    store = ExpertStore(config.out)
    stored = {s.config: store.read_metadata(s.config) for s in specs}
    existing = [name for name, metadata in stored.items() if metadata is not None]
    if config.resume:
        done = [s for s in specs if _imported_before(s, stored[s.config], config)]
        other = [name for name in existing if name not in {s.config for s in done}]
        if other:
            raise PipelineError(
                f"{store.uri} holds experts for {', '.join(other)} that this import did not store (trained, "
                "or from another repo): pass --overwrite to replace them, or leave those tasks out"
            )
        specs = [s for s in specs if s not in done]
        log.info("--resume: %d expert(s) already imported, %d to go", len(done), len(specs))
    elif existing and not config.overwrite:
        raise PipelineError(
            f"{store.uri} already holds experts for {', '.join(existing)}: pass --overwrite to replace them, "
            "or --resume to keep what an earlier run of this import stored"
        )
    fetched: list[Fetched] = []
    problems: list[str] = []
    for spec in specs:  # pass 1: fetch and check everything before writing anything
        try:
            repo = repo_for(spec, config.repo)
            one = (_from_mirror if mirror else _from_hub)(spec, repo, config)
            _check(one, config)
            fetched.append(one)
        except PipelineError as exc:
            problems.append(f"{spec.config}: {exc}")
    if problems:
        count = f"{len(problems)} of {len(specs)} task(s)"
        raise PipelineError(f"nothing imported; {count} cannot be: " + "; ".join(problems))
    results = []
    for one in fetched:  # pass 2
        try:
            results.append(_install(store, one, config))
        except PipelineError as exc:
            results.append(ExpertResult(one.spec.config, "?", FAILED, error=str(exc)))
    return ImportExpertsSummary(store.uri, results, time.monotonic() - started)
