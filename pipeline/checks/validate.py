"""`pipeline validate`: check a dataset against the schema, the registry and its manifests.

Each check targets a mistake that JAT's own pipeline lets through silently: float64 rewards,
a wrong observation size, per-step columns of different lengths, extra columns, NaN/inf,
missing splits, files that differ from what the manifest recorded (flipped bytes,
truncation, duplicates), and files under `data/` that no manifest lists. The manifest's own
per-episode claims (seed, split, digest, return, success) are recomputed in
`pipeline.checks.claims`. Every failure names the config, the shard and the row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.checks.claims import StoredSteps, capped, check_plan, check_rows
from pipeline.checks.integrity import repair_hint, unfinished_configs
from pipeline.checks.replay import replay_config
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.format.columns import (
    CONTINUOUS_ACTIONS,
    DISCRETE_ACTIONS,
    REWARDS,
    RowError,
    check_inner,
    check_values,
    list_lengths,
)
from pipeline.format.manifest import Manifest, dataset_configs, read_info, read_manifest
from pipeline.format.schema import DATA_DIR, MANIFEST_PATH, PLAN_PATH, SPLITS
from pipeline.runtime.storage import Location, open_location
from pipeline.suites import get_suite
from pipeline.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)
DATA_ROOT = DATA_DIR.partition("/")[0]  # "data": every config's folder is in it
MAX_CLAIM_ERRORS = 20  # per config and kind: an edited plan would otherwise list every episode
RESUME_OR_DELETE = (
    "delete it, or finish the interrupted rollout that wrote it with `pipeline rollout ... --resume`"
)


@dataclass
class ConfigReport:
    config: str
    episodes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    steps: int = 0
    shards: int = 0
    errors: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    """File-level failures (manifest missing or unreadable, a shard missing or of another size or
    sha256): what `pipeline rollout --resume` repairs by re-recording the damaged units."""

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class ValidationReport:
    uri: str
    configs: list[ConfigReport]
    dataset_errors: list[str] = field(default_factory=list)
    """Failures of no config: files and folders under `data/` that no manifest accounts for."""
    fix: str = ""
    """The command that repairs the damaged configs (`ConfigReport.damage`, and config folders
    whose manifest is missing), or "" when no failure is of that kind."""

    @property
    def ok(self) -> bool:
        return not self.dataset_errors and all(c.ok for c in self.configs)

    @property
    def errors(self) -> list[str]:
        return [*self.dataset_errors, *(e for c in self.configs for e in c.errors)]


def _check_table(table: pa.Table, spec: TaskSpec, expected_lengths: list[int]) -> StoredSteps:
    """Row-level checks of one shard against the registry and its manifest records; returns the
    steps, flattened, for the checks of the manifest's claims (`validate_manifest.check_rows`)."""
    columns = list(table.column_names)
    lengths = list_lengths(table.column(columns[0]))
    for name in columns[1:]:
        other = list_lengths(table.column(name))
        if (other != lengths).any():
            row = int(np.flatnonzero(other != lengths)[0])
            raise RowError(row, f"{name} has {other[row]} steps but {columns[0]} has {lengths[row]}")
    if (lengths == 0).any():
        raise RowError(int(np.flatnonzero(lengths == 0)[0]), "empty episode")
    if list(lengths) != expected_lengths:
        row = next(i for i, (a, b) in enumerate(zip(lengths, expected_lengths, strict=False)) if a != b)
        raise RowError(row, f"episode has {lengths[row]} steps, the manifest says {expected_lengths[row]}")
    act = spec.action
    observed = get_suite(spec.suite).layout.check_observations(table, spec, lengths)
    if act.type == "discrete":
        actions = pc.list_flatten(table.column(DISCRETE_ACTIONS)).to_numpy()
        check_values(actions, DISCRETE_ACTIONS, 0, act.n - 1, lengths, 1)
    else:
        values = check_inner(table.column(CONTINUOUS_ACTIONS), CONTINUOUS_ACTIONS, act.dim, lengths)
        actions = values.to_numpy().reshape(-1, act.dim)
        check_values(actions.reshape(-1), CONTINUOUS_ACTIONS, act.low, act.high, lengths, act.dim)
    rewards = pc.list_flatten(table.column(REWARDS)).to_numpy()
    check_values(rewards, REWARDS, -np.inf, np.inf, lengths, 1)
    return StoredSteps(lengths, observed.observations, observed.texts, actions, rewards)


def _check_schema(schema: pa.Schema, domain: str) -> str | None:
    expected = get_suite(domain).layout.arrow_schema
    if schema.names != expected.names:
        return f"columns {schema.names} differ from JAT's {expected.names}"
    for name in expected.names:
        if not schema.field(name).type.equals(expected.field(name).type):
            return (
                f"column {name} is {schema.field(name).type}, JAT's schema says {expected.field(name).type}"
            )
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta is None or json.loads(meta) != json.loads(expected.metadata[b"huggingface"]):
        return "the embedded `datasets` features metadata differs from the schema module's"
    return None


def _read_shard(location: Location, path: str) -> pa.Buffer:
    """The whole shard, once, in memory Arrow allocated: it serves the checksum and the parse.

    Never memory Python owns (`bytes`, or `read_buffer()` of a non-seekable input stream, which
    wraps `bytes`): `pq.read_table` can drop its last reference to its source on one of Arrow's
    pool threads after it has returned. If the interpreter is exiting by then, that thread needs
    the GIL to release the `bytes`, CPython ends it with `pthread_exit`, and the unwind through
    Arrow's noexcept destructor aborts the process ("terminate called without an active
    exception", exit 134, after the report was printed). Arrow's own memory is freed without
    the GIL. A random-access file knows its size, so `read_buffer` lets Arrow allocate.
    """
    with location.fs.open_input_file(location.path(path)) as file:
        return file.read_buffer()


def _config_strays(location: Location, config: str, listed: set[str]) -> tuple[set[str], list[str]]:
    """Files in `data/<config>/` (and the folders in it) that its manifest does not list."""
    on_disk, errors = set(), []
    for info in location.list(DATA_DIR.format(config=config)):
        path = location.relative(info.path)
        if info.type == pafs.FileType.Directory:
            errors.append(f"{config}: {path}/ is a folder its manifest does not know: delete it")
            continue
        on_disk.add(path)
        if path not in listed:
            errors.append(
                f"{config}: {path} is not in the manifest (stray or partial file): {RESUME_OR_DELETE}"
            )
    return on_disk, errors


def _dataset_strays(location: Location) -> list[str]:
    """Files directly under `data/`, and config folders without a manifest (an interrupted rollout
    writes its manifest last). Temporary files live under `.tmp/`, never under `data/`."""
    errors = []
    for info in location.list(DATA_ROOT):
        path = location.relative(info.path)
        if info.type != pafs.FileType.Directory:
            errors.append(f"{path} belongs to no config (stray file): delete it")
        elif not location.exists(MANIFEST_PATH.format(config=info.base_name)):
            errors.append(
                f"{path}/ has no manifest ({MANIFEST_PATH.format(config=info.base_name)}): {RESUME_OR_DELETE}"
            )
    return errors


def validate_config(location: Location, config: str) -> ConfigReport:
    """Check one config; collects every shard-level failure rather than stopping at the first."""
    report = ConfigReport(config)
    try:
        spec = get_task(config)
        manifest: Manifest = read_manifest(location, config)
    except PipelineError as exc:
        report.errors.append(f"{config}: {exc}")
        if location.exists(PLAN_PATH.format(config=config)):
            report.damage.append(report.errors[-1])
        return report
    on_disk, strays = _config_strays(location, config, {s.path for s in manifest.shards})
    report.errors += strays
    claims: list[str] = []
    seen: dict[int, str] = {}
    for shard in manifest.shards:
        where = f"{config}: {shard.path}"
        if shard.path not in on_disk:
            report.errors.append(f"{where}: missing (listed in the manifest)")
            report.damage.append(report.errors[-1])
            continue
        size = location.fs.get_file_info(location.path(shard.path)).size
        if size != shard.num_bytes:
            report.errors.append(
                f"{where}: {size} bytes, the manifest says {shard.num_bytes} (truncated or replaced)"
            )
            report.damage.append(report.errors[-1])
            continue
        data = _read_shard(location, shard.path)
        if hashlib.sha256(data).hexdigest() != shard.sha256:
            report.errors.append(f"{where}: sha256 differs from the manifest (corrupted)")
            report.damage.append(report.errors[-1])
            continue
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            report.errors.append(f"{where}: unreadable Parquet ({exc})")
            continue
        problem = _check_schema(table.schema, spec.suite)
        if problem:
            report.errors.append(f"{where}: {problem}")
            continue
        if table.num_rows != len(shard.episodes):
            report.errors.append(
                f"{where}: {table.num_rows} rows, the manifest lists {len(shard.episodes)} episodes"
            )
            continue
        try:
            steps = _check_table(table, spec, [e.length for e in shard.episodes])
        except RowError as exc:
            episode = shard.episodes[exc.row].episode_id
            report.errors.append(f"{where} row {exc.row} (episode {episode}): {exc}")
        else:
            claims += check_rows(where, shard, steps, spec.suite)
        for row, record in enumerate(shard.episodes):
            if record.episode_id in seen:
                report.errors.append(
                    f"{where} row {row}: episode id {record.episode_id} also in {seen[record.episode_id]}"
                )
            seen[record.episode_id] = shard.path
        report.shards += 1
        report.episodes[shard.split] += table.num_rows
        report.steps += sum(e.length for e in shard.episodes)
    report.errors += capped(config, claims, MAX_CLAIM_ERRORS)
    report.errors += capped(config, check_plan(manifest), MAX_CLAIM_ERRORS)
    dropped = {d["episode_id"] for d in manifest.dropped}
    missing = set(range(manifest.planned_episodes)) - set(seen) - dropped
    if missing:
        report.errors.append(
            f"{config}: planned episodes missing (neither stored nor dropped): {sorted(missing)[:10]}"
        )
    for split in SPLITS:
        if not any(s.split == split for s in manifest.shards):
            report.errors.append(
                f"{config}: no {split} split (re-run with more episodes or a test fraction > 0)"
            )
    return report


def validate(config: ValidateConfig) -> ValidationReport:
    """Validate the named configs (default: every config with a manifest) of the dataset at `data_dir`.

    Without `configs`, the whole dataset is checked, so files and folders under `data/` that
    belong to no config with a manifest fail it too. With `replay` K, each config that passed the
    file checks also has its first K episodes re-simulated (`pipeline.checks.replay`); any that do not
    reproduce fail it.
    """
    uri, configs, replay = config.data_dir, list(config.configs), config.replay
    location = open_location(uri)
    if not location.exists(""):
        raise PipelineError(f"{uri} does not exist: give the folder or URI a rollout wrote")
    read_info(location)  # a dataset of another on-disk format is refused here, in one line
    names = list(configs) if configs else dataset_configs(location)
    unfinished = [] if configs else unfinished_configs(location)
    if not names and not unfinished:
        raise PipelineError(f"{uri} holds no config with a manifest: is it a jat-pipeline dataset?")
    for name in names:
        get_task(name)  # unknown names fail at once, with the closest valid ones
    strays = [] if configs else _dataset_strays(location)
    strays += [
        f"{name}: {MANIFEST_PATH.format(config=name)} is missing (deleted, or the rollout never finished)"
        for name in unfinished
        if not location.exists(DATA_DIR.format(config=name))  # else `_dataset_strays` named it
    ]
    reports = [validate_config(location, name) for name in names]
    for report in reports:
        if replay and report.ok:  # replaying rows that failed the checks would only repeat them
            result = replay_config(location, report.config, replay)
            report.errors += [m.line(report.config) for m in result.mismatches]
    damaged = sorted({r.config for r in reports if r.damage} | set(unfinished))
    fix = repair_hint(location, damaged) if damaged else ""
    return ValidationReport(location.uri, reports, strays, fix)
