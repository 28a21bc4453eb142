"""`pipeline.tasks.episodes`: the one episode loop, on real envs: how an episode ends and what it adds up."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.episodes import EpisodeRun, play
from pipeline.tasks.policies import EpisodeFailed
from pipeline.tasks.registry import get_task

PENDULUM = get_task("mujoco-pendulum")  # InvertedPendulum-v5: falls within ~20 steps without control
PICKUP = get_task("babyai-pickup")  # never solved by "done" (action 6): it only ends at the time limit
GOTO = get_task("babyai-go-to")
DONE = 6


class StepLog(EpisodeRun):
    """An episode run that keeps what `record` is given (the hook the recorder overrides)."""

    def __init__(self, *args, **kwargs) -> None:
        self.steps: list[tuple[object, object, float]] = []
        super().__init__(*args, **kwargs)

    def record(self, observation, action, reward) -> None:
        self.steps.append((observation, action, reward))


@pytest.fixture(scope="module")
def pendulum():
    env = make_env(PENDULUM)
    yield env
    env.close()


def test_an_episode_ends_at_the_envs_terminal_state(pendulum):
    run = StepLog(pendulum, PENDULUM, seed=1)
    assert play(run, lambda r: np.array([0.0])) is None
    assert (run.terminated, run.truncated, run.cut) == (True, False, False)
    assert run.length == len(run.steps) == 19
    # InvertedPendulum-v5: 1 per step, 0 on the terminating step
    assert [reward for _, _, reward in run.steps] == [1.0] * 18 + [0.0]
    assert run.total == 18.0 and run.reward == 0.0
    assert run.success is None  # MuJoCo never says


def test_reset_uses_the_seed_so_an_episode_replays(pendulum):
    first = StepLog(pendulum, PENDULUM, seed=5)
    play(first, lambda r: np.array([0.0]))
    second = StepLog(pendulum, PENDULUM, seed=5)
    play(second, lambda r: np.array([0.0]))
    other = StepLog(pendulum, PENDULUM, seed=6)
    assert first.length == second.length
    for (a, _, _), (b, _, _) in zip(first.steps, second.steps, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.steps[0][0], other.observation)


def test_an_episode_ends_at_the_envs_time_limit_as_truncated():
    env = make_env(PICKUP, max_episode_steps=5)
    run = EpisodeRun(env, PICKUP, seed=1)
    assert play(run, lambda r: DONE) is None
    assert (run.terminated, run.truncated, run.cut) == (False, True, False)
    assert run.length == 5 and run.total == 0.0
    assert run.success is False  # BabyAI always says: not reached


def test_max_steps_cuts_an_episode_the_env_would_continue(pendulum):
    run = EpisodeRun(pendulum, PENDULUM, seed=1, max_steps=3)
    assert play(run, lambda r: np.array([0.0])) is None
    assert (run.terminated, run.truncated, run.cut) == (False, False, True)
    assert run.length == 3 and run.total == 3.0


def test_max_steps_reached_as_the_env_ends_is_the_envs_end_not_a_cut():
    env = make_env(PICKUP, max_episode_steps=5)
    run = EpisodeRun(env, PICKUP, seed=1, max_steps=5)
    play(run, lambda r: DONE)
    assert (run.truncated, run.cut, run.length) == (True, False, 5)


def test_continuous_actions_are_clipped_to_the_action_space(pendulum):
    assert (PENDULUM.action.low, PENDULUM.action.high) == (-3.0, 3.0)
    run = StepLog(pendulum, PENDULUM, seed=1)
    run.step([10.0])
    run.step(np.array([-7.5]))
    run.step(np.array([1.25], dtype=np.float64))
    actions = [action for _, action, _ in run.steps]
    assert [a.tolist() for a in actions] == [[3.0], [-3.0], [1.25]]
    assert all(a.dtype == np.float32 for a in actions)


def test_the_recorded_observation_is_the_one_acted_on(pendulum):
    run = StepLog(pendulum, PENDULUM, seed=2)
    first = run.observation
    run.step(np.array([0.0]))
    np.testing.assert_array_equal(run.steps[0][0], first)
    assert not np.array_equal(run.observation, first)


def test_a_solved_babyai_episode_is_a_success():
    env = make_env(GOTO)
    bot = BabyAIBotPolicy()
    run = EpisodeRun(env, GOTO, seed=3)
    bot.reset(env, 3)
    assert play(run, lambda r: bot.act(r.observation, r.info)) is None
    assert (run.terminated, run.success, run.length) == (True, True, 4)
    assert run.total == pytest.approx(1 - 0.9 * 4 / env.unwrapped.max_steps)


def test_a_policy_that_gives_up_cuts_the_episode_short_with_its_reason(pendulum):
    def act(run: EpisodeRun):
        if run.length == 2:
            raise EpisodeFailed("bot error: no path")
        return np.array([0.0])

    run = EpisodeRun(pendulum, PENDULUM, seed=1)
    assert play(run, act) == "bot error: no path"
    assert (run.length, run.total, run.terminated, run.truncated) == (2, 2.0, False, False)


def test_an_episode_past_its_wall_clock_limit_is_cut_between_steps(pendulum):
    def slow(run: EpisodeRun):
        time.sleep(0.02)  # every step takes longer than the whole limit
        return np.array([0.0])

    run = EpisodeRun(pendulum, PENDULUM, seed=1, timeout_s=0.01)
    assert play(run, slow) == "episode timeout: still running after 0.01 s (step 1)"
    assert run.length == 1 and not run.terminated


def test_without_a_limit_an_episode_is_never_overdue(pendulum):
    run = EpisodeRun(pendulum, PENDULUM, seed=1)
    time.sleep(0.01)
    assert run.overdue() is None
    generous = EpisodeRun(pendulum, PENDULUM, seed=1, timeout_s=3600)
    assert play(generous, lambda r: np.array([0.0])) is None and generous.terminated
