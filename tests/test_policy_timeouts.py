"""Time limits on policy calls and episodes: nothing a policy does can stall a rollout worker.

The regression episodes are planned episodes of `--seed 0` on which minigrid's BabyAI bot replans
forever (found by `pipeline rollout --suite babyai --episodes 10 --policy scripted`, which then hung:
without the bound each of them was still running after 60 s, at 0.4-0.7 GB).
"""

from __future__ import annotations

import contextlib
import gc
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.format.plan import PlannedEpisode, episode_seed
from pipeline.format.shards import Episode
from pipeline.rollout.policy_factory import make_policy
from pipeline.rollout.recorder import record_batched, record_episode
from pipeline.suites import suite_names
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import PolicyTimeout
from pipeline.tasks.registry import get_task, suite_tasks
from pipeline.tasks.sections import RolloutSection, read_section

# config -> {episode id: the step whose replan runs away}, for `--seed 0`.
RUNAWAYS = {"babyai-unlock-to-unlock": {0: 2, 5: 2, 6: 2, 7: 2, 8: 2}, "babyai-unlock": {6: 125}}
REASON = "policy step limit: replan pushed > 100 subgoals at step {step} (minigrid's bot loops on this state)"


class _Hung(Exception):
    pass


@contextlib.contextmanager
def fails_if_hung(seconds: float) -> Iterator[None]:
    """Turn a hang (the bug under test) into a test failure instead of a stuck test run."""

    def expire(signum: int, frame: Any) -> None:
        raise _Hung(f"still running after {seconds} s: the bound did not fire")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def planned(config: str, episode_id: int) -> PlannedEpisode:
    return PlannedEpisode(episode_id, episode_seed(0, config, episode_id), "train")


def test_the_regression_seeds_make_the_raw_bot_run_away():
    """Without the bound, one replan of each regression episode pushes subgoals without end."""
    from minigrid.utils.baby_ai_bot import BabyAIBot

    class RunningAway(Exception):
        pass

    class CountingStack(list):
        pushes = 0

        def append(self, item: Any) -> None:
            CountingStack.pushes += 1
            if CountingStack.pushes > 100:  # a healthy replan pushes a handful
                raise RunningAway
            super().append(item)

    with fails_if_hung(60):
        for config, runaways in RUNAWAYS.items():
            env = make_env(get_task(config))
            for episode_id, runaway_step in runaways.items():
                env.reset(seed=planned(config, episode_id).seed)
                bot = BabyAIBot(env.unwrapped)
                bot.stack = CountingStack(bot.stack)
                step = 0
                with pytest.raises(RunningAway):
                    while True:
                        CountingStack.pushes = 0
                        env.step(bot.replan())
                        step += 1
                assert step == runaway_step, (config, episode_id)


@pytest.mark.parametrize("config", sorted(RUNAWAYS))
def test_runaway_replans_drop_their_episode_and_the_others_are_recorded(config):
    spec = get_task(config)
    env = make_env(spec)
    policy = make_policy("scripted", spec, env)
    with fails_if_hung(60):
        for episode_id in range(10):
            start = time.thread_time()
            result = record_episode(env, policy, spec, planned(config, episode_id))
            cpu = time.thread_time() - start
            if episode_id in RUNAWAYS[config]:
                assert result == REASON.format(step=RUNAWAYS[config][episode_id])
                assert cpu < 3.0  # the bound fires at the 101st subgoal pushed, within milliseconds
            else:
                assert isinstance(result, Episode) and result.length > 0, result
                assert result.episode_return > 0  # the bot solved it
            assert gc.isenabled()  # the replan's garbage-collector pause is always undone


def test_the_bound_works_outside_the_main_thread():
    """Unlike SIGALRM, the budget needs no main thread (threaded or async Ray actors, other hosts)."""
    config = "babyai-unlock-to-unlock"
    spec = get_task(config)
    env = make_env(spec)
    results: list[Episode | str] = []
    worker = threading.Thread(
        target=lambda: results.append(
            record_episode(env, make_policy("scripted", spec, env), spec, planned(config, 0))
        ),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the bound did not fire in a non-main thread"
    assert results == [REASON.format(step=2)]


def test_a_replan_over_budget_drops_the_episode_at_that_step():
    """A replan that returns, but after its budget, is dropped too (JAT's rule), deterministically here."""
    spec = get_task("babyai-go-to")
    env = make_env(spec)
    policy = BabyAIBotPolicy(replan_timeout_s=1e-9)  # every replan takes far longer than 1 ns of CPU
    result = record_episode(env, policy, spec, planned(spec.config, 0))
    assert result == "policy step timeout: replan took > 1e-09 s (CPU) at step 0"
    policy.reset(env, 0)
    with pytest.raises(PolicyTimeout):
        policy.act(None, {})
    with pytest.raises(ValueError, match="positive"):
        BabyAIBotPolicy(replan_timeout_s=0)


def test_rollout_policy_takes_its_replan_budget_from_the_registry():
    spec = get_task("babyai-unlock")
    assert spec.rollout.bot_replan_timeout_s == 1.0
    tight = replace(spec, rollout=replace(spec.rollout, bot_replan_timeout_s=0.5))
    policy = make_policy("scripted", tight, make_env(tight))
    assert policy.provenance()["replan_timeout_s"] == 0.5


def test_an_episode_past_its_wall_clock_limit_is_dropped():
    spec = get_task("babyai-go-to")
    assert spec.rollout.episode_timeout_s == 120
    env = make_env(spec)
    policy = make_policy("scripted", spec, env)
    assert isinstance(record_episode(env, policy, spec, planned(spec.config, 0)), Episode)
    hurried = replace(spec, rollout=replace(spec.rollout, episode_timeout_s=1e-9))
    result = record_episode(env, policy, hurried, planned(spec.config, 0))
    assert result == "episode timeout: still running after 1e-09 s (step 1)"


class ZeroActions:
    """A real batchable policy (all-zero torques): exercises the lockstep recorder without training."""

    name = "zero"

    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim

    def reset(self, env: Any, seed: int) -> None:
        pass

    def act(self, observation: Any, info: dict[str, Any]) -> np.ndarray:
        return np.zeros(self.action_dim, dtype=np.float32)

    def batchable(self) -> bool:
        return True

    def act_batch(self, observations: np.ndarray) -> np.ndarray:
        return np.zeros((len(observations), self.action_dim), dtype=np.float32)

    def provenance(self) -> dict[str, Any]:
        return {"policy": self.name}


def test_lockstep_recording_drops_episodes_past_their_limit():
    spec = get_task("mujoco-hopper")
    envs = [make_env(spec) for _ in range(2)]
    policy = ZeroActions(spec.action.dim)
    episodes = [planned(spec.config, i) for i in range(3)]
    kept = dict(record_batched(envs, policy, spec, episodes))
    assert all(isinstance(kept[e], Episode) for e in episodes)
    hurried = replace(spec, rollout=replace(spec.rollout, episode_timeout_s=1e-9))
    dropped = dict(record_batched(envs, policy, hurried, episodes))
    assert sorted(e.episode_id for e in dropped) == [0, 1, 2]
    assert set(dropped.values()) == {"episode timeout: still running after 1e-09 s (step 1)"}


def test_every_suite_declares_an_episode_limit_and_unknown_rollout_keys_are_refused():
    for suite in suite_names():
        assert suite_tasks(suite)[0].rollout.episode_timeout_s > 0
    with pytest.raises(PipelineError, match=r"unknown key\(s\) \['episode_timout_s'\]"):
        read_section(RolloutSection, {"episode_timout_s": 60}, "env_configs/babyai.yaml defaults rollout")
    for bad in (0, -1, "60", True):
        with pytest.raises(PipelineError, match=r"bot_replan_timeout_s must be (a positive number|float)"):
            read_section(
                RolloutSection, {"bot_replan_timeout_s": bad}, "env_configs/babyai.yaml defaults rollout"
            )


def _rollout_and_read_drops(out: Any, workers: int) -> dict[str, dict[int, str]]:
    from pipeline.checks.validate import validate
    from pipeline.rollout.run import RolloutConfig, rollout

    rollout(RolloutConfig(out=str(out), tasks=tuple(RUNAWAYS), episodes=10, workers=workers, progress=False))
    report = validate(ValidateConfig(str(out)))
    assert report.ok, report.errors
    drops = {}
    for config in RUNAWAYS:
        manifest = json.loads((out / "meta" / config / "manifest.json").read_text())
        # the planned 10, then the replacements of their drops (which may drop in turn)
        drops[config] = {d["episode_id"]: d["reason"] for d in manifest["dropped"] if d["episode_id"] < 10}
        stored = sum(len(s["episodes"]) for s in manifest["shards"])
        assert stored == 10 and stored + len(manifest["dropped"]) == manifest["plan"]["planned_episodes"]
        assert manifest["provenance"]["replan_max_subgoals"] == 100
    return drops


def _expected_drops() -> dict[str, dict[int, str]]:
    return {c: {i: REASON.format(step=s) for i, s in r.items()} for c, r in RUNAWAYS.items()}


def test_rollout_in_process_records_the_drops_in_the_manifest(tmp_path):
    with fails_if_hung(120):
        drops = _rollout_and_read_drops(tmp_path / "serial", workers=0)
    assert drops == _expected_drops()


@pytest.mark.ray
def test_rollout_on_ray_actors_records_the_drops_in_the_manifest(ray_cluster, tmp_path):
    with fails_if_hung(240):
        drops = _rollout_and_read_drops(tmp_path / "ray", workers=2)
    assert drops == _expected_drops()
