"""`pipeline.rollout.recorder`: planned episodes played into their stored form, one env at a time or in
lockstep."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipeline.format.plan import PlannedEpisode
from pipeline.rollout.recorder import can_batch, record_batched, record_episode
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.suites.metaworld import MetaWorldScriptedPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import RandomPolicy
from pipeline.tasks.registry import get_task

GOTO = get_task("babyai-go-to")
PICKUP = get_task("babyai-pickup")
CHEETAH = get_task("mujoco-halfcheetah")  # never terminates: only its time limit ends an episode
PENDULUM = get_task("mujoco-pendulum")


class LinearController:
    """A deterministic, memoryless policy that acts for a batch at once (as trained experts do)."""

    name = "linear"

    def __init__(self, gains: np.ndarray, batchable: bool = True) -> None:
        self.gains = np.asarray(gains, dtype=np.float32)
        self._batchable = batchable

    def batchable(self) -> bool:
        return self._batchable

    def act_batch(self, observations: np.ndarray) -> np.ndarray:
        return observations @ self.gains

    def reset(self, env, seed: int) -> None:
        pass

    def act(self, observation, info):
        return self.act_batch(np.asarray(observation)[None])[0]

    def provenance(self) -> dict:
        return {"policy": self.name}


def test_a_babyai_episode_is_stored_with_its_mission_grid_and_success():
    env = make_env(GOTO)
    planned = PlannedEpisode(episode_id=12, seed=3, split="train", checkpoint=2048)
    episode = record_episode(env, BabyAIBotPolicy(), GOTO, planned)
    assert (episode.episode_id, episode.seed, episode.checkpoint_step) == (12, 3, 2048)
    assert episode.length == len(episode.actions) == len(episode.observations) == len(episode.texts) == 4
    assert episode.success is True
    assert len(set(episode.texts)) == 1 and episode.texts[0].startswith("go to ")
    assert all(np.asarray(o).shape == (148,) for o in episode.observations)
    assert all(isinstance(a, int) for a in episode.actions)
    assert episode.rewards[:-1] == [0.0, 0.0, 0.0] and episode.rewards[-1] > 0


def test_an_unfinished_babyai_episode_is_dropped_with_its_reason():
    env = make_env(PICKUP, max_episode_steps=3)
    assert PICKUP.rollout.drop_unfinished
    planned = PlannedEpisode(0, 7, "train")
    result = record_episode(env, RandomPolicy(env.action_space), PICKUP, planned)
    assert result == "unfinished: the episode hit the step limit"


def test_a_mujoco_episode_that_hits_its_time_limit_is_kept():
    env = make_env(CHEETAH, max_episode_steps=5)
    assert not CHEETAH.rollout.drop_unfinished
    episode = record_episode(env, RandomPolicy(env.action_space), CHEETAH, PlannedEpisode(3, 11, "test"))
    assert episode.length == 5 and episode.success is None and episode.checkpoint_step is None
    assert all(o.dtype == np.float32 and o.shape == (17,) for o in episode.observations)
    assert all(np.all(np.abs(a) <= 1.0) for a in episode.actions)
    again = record_episode(env, RandomPolicy(env.action_space), CHEETAH, PlannedEpisode(3, 11, "test"))
    assert again.digest() == episode.digest()  # content depends on the seed alone


def test_metaworld_stores_the_observation_with_the_goal_hidden():
    spec = get_task("metaworld-reach")
    env = make_env(spec)
    episode = record_episode(env, MetaWorldScriptedPolicy(spec.env_name), spec, PlannedEpisode(0, 1, "train"))
    assert episode.success is True
    observations = np.asarray(episode.observations)
    assert observations.shape == (episode.length, 39)
    assert np.all(observations[:, -3:] == 0)  # the goal, zeroed as in JAT's data
    assert np.any(observations[:, :3] != 0)


def test_atari_frames_are_stored_as_four_channel_pngs():
    spec = get_task("atari-breakout")
    env = make_env(spec)
    episode = record_episode(env, RandomPolicy(env.action_space), spec, PlannedEpisode(0, 7, "train"))
    assert episode.length == len(episode.observations) > 0
    assert all(frame.startswith(b"\x89PNG\r\n\x1a\n") for frame in episode.observations)
    image = Image.open(io.BytesIO(episode.observations[-1]))
    assert (image.mode, image.size) == ("RGBA", (84, 84))
    frames = np.asarray(image)
    assert frames.shape == (84, 84, 4) and frames.any()


def test_only_batchable_policies_are_played_in_lockstep():
    assert can_batch(LinearController(np.zeros((4, 1))))
    assert not can_batch(LinearController(np.zeros((4, 1)), batchable=False))
    assert not can_batch(RandomPolicy(make_env(PENDULUM).action_space))
    assert not can_batch(BabyAIBotPolicy())


def test_lockstep_episodes_equal_the_same_episodes_played_alone_or_in_other_company():
    policy = LinearController(np.array([[0.0], [0.5], [0.0], [0.0]]))  # holds the pole up 29-40 steps
    planned = [PlannedEpisode(i, 100 + i, "train") for i in range(5)]
    envs = [make_env(PENDULUM, max_episode_steps=40) for _ in range(2)]

    together = dict(record_batched(envs, policy, PENDULUM, planned))
    assert sorted(p.episode_id for p in together) == [0, 1, 2, 3, 4]
    lengths = {p.episode_id: e.length for p, e in together.items()}
    assert len(set(lengths.values())) > 1, lengths  # episodes end out of step: slots are refilled
    for p in planned:
        (alone,) = dict(record_batched(envs, policy, PENDULUM, [p])).values()
        one_by_one = record_episode(envs[0], policy, PENDULUM, p)
        assert alone.digest() == together[p].digest() == one_by_one.digest(), p
        assert alone.rewards == together[p].rewards


def test_lockstep_keeps_each_episodes_own_seed_and_time_limit():
    policy = LinearController(np.zeros((4, 1)))
    envs = [make_env(PENDULUM, max_episode_steps=3) for _ in range(3)]
    planned = [PlannedEpisode(i, 7 * i, "test") for i in range(2)]  # fewer episodes than envs
    results = dict(record_batched(envs, policy, PENDULUM, planned))
    assert {p.seed for p in results} == {0, 7}
    assert all(e.length == 3 and e.seed == p.seed for p, e in results.items())
