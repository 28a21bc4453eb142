"""`experts.wrappers`: training-only wrappers change rewards and episode ends, never observations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from experts.wrappers import TRUE_EPISODE, ClipReward, EpisodicLife, TrueEpisodeStats, make_training_env
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

BREAKOUT = get_task("atari-breakout")
HOPPER = get_task("mujoco-hopper")


def _wrappers(env) -> list[type]:
    chain = []
    while hasattr(env, "env"):
        chain.append(type(env))
        env = env.env
    return chain


def test_atari_trains_with_clipped_rewards_and_episodic_life_on_the_stored_observations():
    env = make_training_env(BREAKOUT)
    assert _wrappers(env)[:3] == [ClipReward, EpisodicLife, TrueEpisodeStats]
    plain = make_env(BREAKOUT)
    obs, _ = env.reset(seed=5)
    expected, _ = plain.reset(seed=5)
    assert obs.shape == (84, 84, 4) and np.array_equal(obs, expected)


def test_mujoco_trains_on_the_env_as_recorded_with_only_true_episode_stats():
    env = make_training_env(HOPPER)
    chain = _wrappers(env)
    assert chain[0] is TrueEpisodeStats and ClipReward not in chain and EpisodicLife not in chain


def test_true_episode_stats_report_the_real_return_and_length_at_the_end_only():
    env = TrueEpisodeStats(make_env(HOPPER))
    env.action_space.seed(0)
    env.reset(seed=1)
    total, length, done = 0.0, 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total, length, done = total + float(reward), length + 1, terminated or truncated
        assert (TRUE_EPISODE in info) == done
    assert info[TRUE_EPISODE] == {"return": total, "length": length} and length > 1
    env.reset(seed=2)  # the count starts over
    _, reward, *_ = env.step(np.zeros(3, dtype=np.float32))
    assert env._length == 1 and env._return == float(reward)


def test_clipped_rewards_are_the_sign_of_the_real_ones():
    real, clipped = make_env(HOPPER), ClipReward(make_env(HOPPER))
    real.reset(seed=3)
    clipped.reset(seed=3)
    action = np.full(3, 0.3, dtype=np.float32)
    seen = set()
    for _ in range(15):
        _, r, *_ = real.step(action)
        _, c, *_ = clipped.step(action)
        assert c == float(np.sign(r))
        seen.add(c)
    assert seen == {1.0}  # Hopper's healthy reward: positive while it stands


@pytest.mark.parametrize("semantics", ["gymnasium", "envpool"])
def test_a_lost_life_ends_the_training_episode_but_not_the_game(semantics):
    """Breakout: FIRE serves the ball now and then, NOOPs let it drop past the paddle. Under envpool's
    semantics the env itself started the next life (envpool's reset after a life loss): no NOOP more."""
    spec = replace(BREAKOUT, env=replace(BREAKOUT.env, atari_semantics=semantics))
    env = TrueEpisodeStats(make_env(spec))
    learner = EpisodicLife(env)
    _, info = learner.reset(seed=0)
    lives = info["lives"]
    assert lives == 5
    terminated, steps = False, 0
    while not terminated:
        _, _, terminated, truncated, info = learner.step(1 if steps % 40 == 0 else 0)  # FIRE now and then
        steps += 1
        assert not truncated and steps < 5000
    assert info["lives"] == lives - 1 and TRUE_EPISODE not in info  # the game goes on
    _, info = learner.reset(seed=123)  # continues the same game: no real reset, one life fewer
    assert info["lives"] == lives - 1 and env._length == steps + (semantics == "gymnasium")
