"""Which policy acts in a rollout: a kind (expert, scripted, random) and an experts store, resolved.

The policies themselves live below: the interface and the untrained ones in `pipeline.tasks.policies`
(core, imported by `experts/`), trained experts in `experts/`. This module sits above both and
applies the rules between them: the gate (a rejected expert is refused unless `--allow-weak`), the
fallback to the bot or scripted expert where a store holds none, and learning-history snapshots.
"""

from __future__ import annotations

import gymnasium as gym

from experts.metadata import ExpertMetadata, ExpertStatus
from experts.store import ExpertStore
from pipeline.configs.release_hub import HF_SCHEME
from pipeline.errors import PipelineError
from pipeline.suites import get_suite, suite_names
from pipeline.tasks.policies import POLICY_KINDS, Policy, RandomPolicy
from pipeline.tasks.registry import TaskSpec


def _store(experts_dir: str | None, spec: TaskSpec, history: bool = False) -> ExpertStore:
    """The experts store; `hf://ORG/PREFIX` (`publish-experts`) is read from a local copy of the
    task's repo ORG/PREFIX-<config>, fetched first (only what changed since the last fetch)."""
    if experts_dir and experts_dir.startswith(HF_SCHEME):
        from pipeline.release.hub_models import expert_store_root

        return ExpertStore(expert_store_root(experts_dir, spec.base_config, history))
    return ExpertStore(experts_dir or "")


def _stored_expert(spec: TaskSpec, experts_dir: str | None, allow_weak: bool) -> ExpertMetadata | None:
    """The metadata of the expert rollout may use for `spec`, None to fall back to the bot/scripted one.

    A stored Meta-World expert may be the scripted policy or a trained network, whichever
    `train-experts` kept (`chosen` in its metadata); its `status` is the kept one's. A store
    without an entry for the task falls back to the bot/scripted expert. Refuses (PipelineError) a
    missing expert where no fallback exists, and a rejected or unevaluated one unless `allow_weak`.
    """
    metadata = None
    if experts_dir:
        metadata = _store(experts_dir, spec).read_metadata(spec.base_config)
    if metadata is None:
        if scripted_available(spec):
            return None
        where = f" in {experts_dir}" if experts_dir else " (no --experts-dir given)"
        raise PipelineError(
            f"no trained expert for {spec.base_config}{where}: train one with "
            f"`pipeline train-experts --tasks {spec.base_config} --out EXPERTS_DIR` and pass "
            "--experts-dir EXPERTS_DIR, or use --policy random"
        )
    status = metadata.status
    if status != ExpertStatus.ACCEPTED and not allow_weak:
        reason = (metadata.gate or {}).get("reason", "it was never evaluated")
        fallback = ", or --policy scripted" if scripted_available(spec) else ""
        raise PipelineError(
            f"the expert for {spec.base_config} in {experts_dir} is {status}: {reason}; train it further "
            f"(`pipeline train-experts --resume`), or pass --allow-weak to record it anyway{fallback}"
        )
    return metadata


def check_policy(kind: str, spec: TaskSpec, experts_dir: str | None, allow_weak: bool = False) -> None:
    """Fail before any work when `kind` cannot act in `spec`'s env."""
    if kind not in POLICY_KINDS:
        raise PipelineError(f"unknown policy {kind!r}; choose one of {', '.join(POLICY_KINDS)}")
    if kind == "scripted" and not scripted_available(spec):
        raise PipelineError(
            f"no scripted policy for {spec.config}: scripted experts exist for "
            f"{', '.join(scripted_suites())} only; use --policy random, or --policy expert with a "
            "trained expert"
        )
    if kind == "expert":
        _stored_expert(spec, experts_dir, allow_weak)


def history_snapshots(spec: TaskSpec, experts_dir: str | None) -> list[int]:
    """Training steps of the stored expert's learning-history snapshots (refused when there are < 2).

    A learning history is every stage of one learner, weak ones included, so the gate does not
    apply; bots and scripted policies have none.
    """
    if not experts_dir:
        raise PipelineError(
            "--learning-history records an expert's snapshots: pass --experts-dir EXPERTS_DIR "
            "written by `pipeline train-experts`"
        )
    store = _store(experts_dir, spec, history=True)
    metadata = store.read_metadata(spec.base_config)
    if metadata is None or not metadata.trained:
        what = "no expert" if metadata is None else f"a {metadata.backend} expert (never trained)"
        raise PipelineError(
            f"{experts_dir} holds {what} for {spec.base_config}, so there is no learning history: train "
            f"one with `pipeline train-experts --tasks {spec.base_config} --out {experts_dir}`"
        )
    steps = store.history_steps(spec.base_config)
    if len(steps) < 2:
        raise PipelineError(
            f"the expert for {spec.base_config} in {experts_dir} kept {len(steps)} learning-history "
            "snapshot(s), a history needs 2 or more: "
            + (
                "publish them with `pipeline publish-experts --with-history`"
                if experts_dir.startswith(HF_SCHEME)
                else "retrain it with `pipeline train-experts --overwrite --history-every N` (default: "
                "expert.steps / expert.history_snapshots)"
            )
        )
    return steps


def make_policy(
    kind: str,
    spec: TaskSpec,
    env: gym.Env,
    experts_dir: str | None = None,
    allow_weak: bool = False,
    step: int | None = None,
) -> Policy:
    """Build the policy `kind` for a task (checked first by `check_policy`).

    "expert" loads the stored expert from `experts_dir` when there is one (accepted by the gate,
    or any with `allow_weak`): for Meta-World, the candidate `train-experts` kept, its trained
    network or its scripted policy (`ExpertStore.load_policy`); without a stored one BabyAI and
    Meta-World fall back to their bot/scripted expert.
    With `step`, the expert's learning-history snapshot at that training step (no gate).
    """
    if step is not None:
        return _store(experts_dir, spec, history=True).load_policy(spec, step=step)
    check_policy(kind, spec, experts_dir, allow_weak)
    if kind == "random":
        return RandomPolicy(env.action_space)
    if kind == "expert":
        metadata = _stored_expert(spec, experts_dir, allow_weak)
        if metadata is not None:
            return _store(experts_dir, spec).load_policy(spec, metadata)
    scripted = get_suite(spec.suite).scripted_policy(spec)
    if scripted is None:  # check_policy refuses this before any work; a caller that skipped it ends here
        raise PipelineError(f"no scripted policy for {spec.config}: use --policy random or --policy expert")
    return scripted


def scripted_available(spec: TaskSpec) -> bool:
    """The task's suite ships a hand-written policy (`Suite.scripted_expert`)."""
    return get_suite(spec.suite).scripted_expert is not None


def scripted_suites() -> list[str]:
    """The titles of the suites that ship a scripted policy, for messages."""
    return [get_suite(name).title for name in suite_names() if get_suite(name).scripted_expert]
