"""`atari_semantics: envpool` (pipeline/suites/atari_envpool.py): what JAT's Sample Factory experts saw.

Against envpool itself where it is importable (pixel for pixel, rewards, game over, truncation),
against the documented algorithm computed directly on a second ALE everywhere, and through the
pipeline: recorded episodes replay bit for bit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from importlib import resources

import cv2
import gymnasium as gym
import numpy as np
import pytest
from ale_py import Action

from pipeline.errors import PipelineError
from pipeline.tasks import registry
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task, suite_tasks

HAS_ENVPOOL = importlib.util.find_spec("envpool") is not None
needs_envpool = pytest.mark.skipif(
    not HAS_ENVPOOL, reason="envpool is not installed (pip install envpool; the comparison needs it)"
)

# Breakout: FIRE and lives; Pong: FIRE, no lives; Space Invaders: FIRE, lives; Ms. Pac-Man: lives, no FIRE.
GAMES = {
    "atari-breakout": "Breakout-v5",
    "atari-pong": "Pong-v5",
    "atari-spaceinvaders": "SpaceInvaders-v5",
    "atari-mspacman": "MsPacman-v5",
}


def _envpool_spec(config: str, noop_max: int = 1, step_limit: int = 27000):
    """The task with envpool semantics; noop_max=1 makes the reset deterministic (1 NOOP, 0 with FIRE)."""
    spec = get_task(config)
    wrappers = dataclasses.replace(spec.env.wrappers, noop_max=noop_max, step_limit=step_limit)
    env = dataclasses.replace(spec.env, atari_semantics="envpool", wrappers=wrappers)
    return dataclasses.replace(spec, env=env)


def _envpool(game: str, **kwargs):
    import envpool

    # Sample Factory's settings (sf_examples/envpool/atari); noop_max=1 for a deterministic start.
    return envpool.make(
        game, env_type="gymnasium", num_envs=1, episodic_life=True, reward_clip=True, noop_max=1, **kwargs
    )


def _channels_last(stack: np.ndarray) -> np.ndarray:
    return np.moveaxis(stack[0], 0, -1)


@needs_envpool
@pytest.mark.parametrize("config", sorted(GAMES))
def test_frames_rewards_and_game_over_equal_envpools(config):
    ours, theirs = make_env(_envpool_spec(config)), _envpool(GAMES[config])
    obs, _ = ours.reset(seed=0)
    their_obs, _ = theirs.reset()
    assert np.array_equal(obs, _channels_last(their_obs))
    actions = np.random.default_rng(7).integers(ours.action_space.n, size=4000)
    lives_lost = 0
    for t, action in enumerate(actions):
        obs, reward, terminated, truncated, info = ours.step(int(action))
        their_obs, _, their_done, _, their_info = theirs.step(np.array([action]))
        game_over = bool(their_info["terminated"][0])
        assert reward == float(their_info["reward"][0]), t  # the unclipped reward
        assert (terminated, truncated) == (game_over, False), t
        if their_done[0] and not game_over:
            # envpool's done at a life loss; its reset on the next call continues the game (as Sample
            # Factory's reset did with the envpool JAT used), and that frame is what the expert saw next.
            assert info["life_loss"], t
            lives_lost += 1
            their_obs, reset_reward, *_ = theirs.step(np.array([0]))
            assert float(reset_reward[0]) == 0.0
        else:
            assert not info["life_loss"] or game_over, t
        assert np.array_equal(obs, _channels_last(their_obs)), f"step {t}"
        if terminated:
            break
    assert terminated, "the game did not end within the test's steps"
    assert lives_lost == 0 if config == "atari-pong" else lives_lost >= 2


@needs_envpool
def test_step_limit_truncates_as_envpools():
    ours = make_env(_envpool_spec("atari-pong", step_limit=40))
    theirs = _envpool("Pong-v5", max_episode_steps=40)
    ours.reset(seed=0)
    theirs.reset()
    for t in range(40):
        obs, _, terminated, truncated, _ = ours.step(t % 6)
        their_obs, _, their_terminated, their_truncated, _ = theirs.step(np.array([t % 6]))
        assert (terminated, truncated) == (bool(their_terminated[0]), bool(their_truncated[0])), t
        assert np.array_equal(obs, _channels_last(their_obs))
    assert truncated and not terminated


def _grey(ale) -> np.ndarray:
    return ale.getScreenGrayscale()


def _small(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA)


def test_breakout_matches_the_documented_algorithm_on_a_second_ale():
    """Without envpool: reset (FIRE), steps (skip 4, max of the last two grey screens, INTER_AREA
    84x84, stack oldest first) and a life loss (FIRE again, the game goes on) computed directly."""
    env = make_env(_envpool_spec("atari-breakout"))
    ref = gym.make(
        "ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0, max_num_frames_per_episode=0
    )
    ref.reset(seed=0)  # loads the ROM and resets the game, as the env's seeded reset does
    ale = ref.unwrapped.ale
    actions = ref.unwrapped._action_set
    obs, _ = env.reset(seed=0)
    ale.act(Action.FIRE)  # Breakout has FIRE: noop_max=1 leaves 0 NOOPs, then one FIRE
    stack = [_small(_grey(ale))] * 4
    assert np.array_equal(obs, np.stack(stack, -1))
    lives, losses, total = ale.lives(), 0, 0.0
    for t in range(2000):
        action = 3 if t % 40 < 20 else 2  # left and right: the ball is lost now and then, bricks hit
        obs, reward, terminated, _, info = env.step(action)
        expected = 0.0
        for frame in range(4):
            expected += ale.act(actions[action])
            if frame == 2:
                third = _grey(ale)
        pooled = np.maximum(third, _grey(ale))
        stack = [*stack[1:], _small(pooled)]
        if ale.game_over():
            break
        if 0 < ale.lives() < lives:  # envpool's episodic-life reset: FIRE, push the new screen
            losses += 1
            expected += ale.act(Action.FIRE)
            stack = [*stack[1:], _small(_grey(ale))]
            assert info["life_loss"] and not terminated
        lives = ale.lives()
        assert reward == expected, t
        total += reward
        assert np.array_equal(obs, np.stack(stack, -1)), t
    assert terminated and losses == 4 and total > 0


def test_fire_reset_exactly_where_the_registry_says_a_game_has_fire():
    for spec in suite_tasks("atari"):
        env = make_env(_envpool_spec(spec.config))
        assert env.fire_reset == spec.has_fire, spec.config
        env.close()


def test_episodes_depend_on_the_seed_alone_and_span_the_whole_game():
    env = make_env(_envpool_spec("atari-breakout", noop_max=30))

    def episode(seed: int) -> tuple[list[np.ndarray], int]:
        frames = [env.reset(seed=seed)[0]]
        rng, losses = np.random.default_rng(seed), 0
        while True:
            obs, _, terminated, truncated, info = env.step(int(rng.integers(4)))
            frames.append(obs)
            losses += info["life_loss"]
            if terminated or truncated:
                return frames, losses

    first, losses = episode(3)
    episode(4)
    again, _ = episode(3)
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert losses == 4  # five lives, one episode


def _yaml_with(semantics: str) -> str:
    """atari.yaml with another `atari_semantics` in its env section."""
    text = resources.files("env_configs").joinpath("atari.yaml").read_text()
    found = re.search(r"\n    atari_semantics: \w+\n", text)
    assert found
    return text.replace(found[0], f"\n    atari_semantics: {semantics}\n", 1)


def test_the_registry_key_is_typed_and_checked():
    specs = registry.parse_suite("atari", _yaml_with("envpool"))
    assert specs["atari-pong"].env.atari_semantics == "envpool"
    assert (
        registry.parse_suite("atari", _yaml_with("gymnasium"))["atari-pong"].env.atari_semantics
        == "gymnasium"
    )
    assert get_task("atari-pong").env.atari_semantics == "envpool"  # JAT's data came from envpool
    with pytest.raises(PipelineError, match="atari_semantics must be one of"):
        registry.parse_suite("atari", _yaml_with("envpol"))
    bad = _yaml_with("envpool").replace("terminal_on_life_loss: false", "terminal_on_life_loss: true")
    with pytest.raises(PipelineError, match="handles life loss itself"):
        registry.parse_suite("atari", bad)


def _registry_with(monkeypatch, semantics: str) -> None:
    """The registry with `atari_semantics: <semantics>` in atari.yaml's env section (cache cleared)."""
    original = registry._load_suite

    def load(suite: str):
        return registry.parse_suite(suite, _yaml_with(semantics)) if suite == "atari" else original(suite)

    registry.all_tasks.cache_clear()
    monkeypatch.setattr(registry, "_load_suite", load)


@pytest.fixture
def envpool_registry(monkeypatch):
    """The registry with `atari_semantics: envpool` in atari.yaml's env section (cache cleared around)."""
    _registry_with(monkeypatch, "envpool")
    yield
    registry.all_tasks.cache_clear()


def test_data_replays_with_the_semantics_it_was_recorded_with(monkeypatch, rollout, tmp_path):
    """Recorded with gymnasium's semantics, replayed after the registry's default became envpool's:
    the manifest's plan names the semantics, replay builds that env, and `--resume` under the other
    semantics is refused naming it (the same seeds would give other episodes)."""
    from pipeline.checks.replay import replay_config
    from pipeline.format.manifest import read_manifest
    from pipeline.runtime.storage import open_location

    data = tmp_path / "data"
    with monkeypatch.context() as patched:
        _registry_with(patched, "gymnasium")
        rollout(data, ("atari-breakout",), "random", episodes=3)
    registry.all_tasks.cache_clear()
    assert get_task("atari-breakout").env.atari_semantics == "envpool"
    location = open_location(str(data))
    assert read_manifest(location, "atari-breakout").plan["atari_semantics"] == "gymnasium"
    result = replay_config(location, "atari-breakout")
    assert result.ok, [m.line("atari-breakout") for m in result.mismatches]
    assert result.exact == len(result.episodes) == 3
    from pipeline.rollout.run import RolloutConfig
    from pipeline.rollout.run import rollout as run_rollout

    again = RolloutConfig(
        out=str(data), tasks=("atari-breakout",), episodes=3, policy="random", progress=False, resume=True
    )
    with pytest.raises(PipelineError, match="atari_semantics: was 'gymnasium', now 'envpool'"):
        run_rollout(again)


def test_recorded_episodes_replay_bit_for_bit(envpool_registry, rollout, tmp_path):
    from pipeline.checks.replay import replay_config
    from pipeline.runtime.storage import open_location

    assert get_task("atari-breakout").env.atari_semantics == "envpool"
    rollout(tmp_path / "data", ("atari-breakout",), "random", episodes=3)
    result = replay_config(open_location(str(tmp_path / "data")), "atari-breakout")
    assert result.ok, [m.line("atari-breakout") for m in result.mismatches]
    assert result.exact == len(result.episodes) == 3 and result.steps > 3


@needs_envpool
def test_training_env_is_envpools_learner_view():
    """`make_training_env` (episodic life, clipped rewards) on envpool semantics gives the learner
    what Sample Factory gave it from envpool: done at each life loss, clipped rewards, and at a done
    the next life's reset frame (its `EnvPoolResetFixWrapper` puts it in place of the last frame)."""
    from experts.wrappers import make_training_env

    ours, theirs = make_training_env(_envpool_spec("atari-breakout")), _envpool("Breakout-v5")
    obs, _ = ours.reset(seed=0)
    their_obs, _ = theirs.reset()
    learner_episodes = 1
    actions = np.random.default_rng(1).integers(4, size=4000)
    for t, action in enumerate(actions):
        obs, reward, terminated, truncated, _ = ours.step(int(action))
        their_obs, their_reward, their_terminated, their_truncated, their_info = theirs.step(
            np.array([action])
        )
        assert (reward, terminated, truncated) == (
            float(their_reward[0]),
            bool(their_terminated[0]),
            bool(their_truncated[0]),
        ), t
        if terminated and their_info["terminated"][0]:
            break
        if terminated:
            their_obs, *_ = theirs.step(np.array([0]))  # envpool's reset, continuing the game
            assert np.array_equal(ours.reset()[0], obs)
            learner_episodes += 1
        assert np.array_equal(obs, _channels_last(their_obs)), t
    assert learner_episodes == 5  # one per life


def test_training_env_starts_the_next_life_without_another_step():
    from experts.wrappers import make_training_env

    env = make_training_env(_envpool_spec("atari-breakout"))
    env.reset(seed=0)
    ale = env.unwrapped.ale
    while True:
        obs, _, terminated, _, info = env.step(0)  # NOOP: Breakout's ball is lost at once
        if terminated:
            break
    assert info["life_loss"] and info["lives"] == 4
    frame = ale.getEpisodeFrameNumber()
    again, _ = env.reset()
    assert np.array_equal(again, obs) and ale.getEpisodeFrameNumber() == frame
