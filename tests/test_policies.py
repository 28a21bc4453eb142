"""`pipeline.tasks.policies`: the policies that need no training, on real envs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.rollout.policy_factory import scripted_available
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.suites.metaworld import MetaWorldScriptedPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.episodes import EpisodeRun, play
from pipeline.tasks.policies import POLICY_KINDS, EpisodeFailed, PolicyTimeout, RandomPolicy
from pipeline.tasks.registry import get_task
from pipeline.tasks.sections import RolloutSection

OPEN = get_task("babyai-open")  # the bot's first replan pushes subgoals on every seed used here
GOTO = get_task("babyai-go-to")
REACH = get_task("metaworld-reach")
PENDULUM = get_task("mujoco-pendulum")


def _actions(policy: RandomPolicy, env, seed: int, n: int = 8) -> list:
    policy.reset(env, seed)
    return [np.asarray(policy.act(None, {})).tolist() for _ in range(n)]


def test_random_actions_replay_from_the_episode_seed():
    env = make_env(PENDULUM)
    policy = RandomPolicy(env.action_space)
    assert _actions(policy, env, 3) == _actions(policy, env, 3)
    assert _actions(policy, env, 3) != _actions(policy, env, 4)
    assert all(-3.0 <= a[0] <= 3.0 for a in _actions(policy, env, 5))
    assert policy.provenance() == {"policy": "random"}


def test_random_discrete_actions_cover_the_action_space():
    env = make_env(GOTO)
    policy = RandomPolicy(env.action_space)
    assert set(_actions(policy, env, 0, n=200)) == set(range(GOTO.action.n))


def test_the_bot_solves_go_to_and_reports_its_bounds():
    env = make_env(GOTO)
    bot = BabyAIBotPolicy(replan_timeout_s=1.0, replan_max_subgoals=50)
    run = EpisodeRun(env, GOTO, seed=3)
    bot.reset(env, 3)
    assert play(run, lambda r: bot.act(r.observation, r.info)) is None
    assert run.success is True
    provenance = bot.provenance()
    assert provenance["policy"] == "babyai-bot"
    assert (provenance["replan_timeout_s"], provenance["replan_max_subgoals"]) == (1.0, 50)
    assert provenance["minigrid"] == "3.2.0"


def test_the_bot_defaults_are_the_registrys_declared_ones():
    bot = BabyAIBotPolicy()
    defaults = RolloutSection()
    assert (bot.replan_timeout_s, bot.replan_max_subgoals) == (
        defaults.bot_replan_timeout_s,
        defaults.bot_replan_max_subgoals,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_replan_pushing_more_subgoals_than_allowed_drops_the_episode(seed):
    env = make_env(OPEN)
    bot = BabyAIBotPolicy(replan_max_subgoals=0)
    run = EpisodeRun(env, OPEN, seed=seed)
    bot.reset(env, seed)
    with pytest.raises(PolicyTimeout) as info:
        bot.act(run.observation, run.info)
    assert isinstance(info.value, EpisodeFailed)  # dropped like any policy that gives up
    assert str(info.value) == (
        "policy step limit: replan pushed > 0 subgoals at step 0 (minigrid's bot loops on this state)"
    )


def test_the_same_episode_is_solved_within_the_declared_budget():
    env = make_env(OPEN)
    bot = BabyAIBotPolicy(replan_max_subgoals=0)
    run = EpisodeRun(env, OPEN, seed=0)
    bot.reset(env, 0)
    with pytest.raises(PolicyTimeout):
        bot.act(run.observation, run.info)
    # the default budget (a count per replan, fresh at each reset) lets the bot solve this very episode
    generous = BabyAIBotPolicy()
    run = EpisodeRun(env, OPEN, seed=0)
    generous.reset(env, 0)
    assert play(run, lambda r: generous.act(r.observation, r.info)) is None
    assert run.success is True


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_replan_budget_of_no_time_is_refused(timeout):
    with pytest.raises(
        ValueError, match=rf"replan_timeout_s must be a positive number of seconds, got {timeout}"
    ):
        BabyAIBotPolicy(replan_timeout_s=timeout)


def test_the_metaworld_scripted_policy_acts_from_the_full_observation():
    env = make_env(REACH)
    policy = MetaWorldScriptedPolicy(REACH.env_name)
    run = EpisodeRun(env, REACH, seed=0)
    policy.reset(env, 0)
    action = policy.act(run.observation, run.info)
    assert np.asarray(action).shape == REACH.action.shape == (4,)
    assert play(run, lambda r: policy.act(r.observation, r.info)) is None
    assert run.success is True
    assert policy.provenance() == {
        "policy": "metaworld-scripted",
        "env_name": "reach-v3",
        "metaworld": "3.1.1",
    }


def test_a_metaworld_task_without_a_scripted_policy_is_refused():
    with pytest.raises(PipelineError, match=r"Meta-World ships no scripted policy for 'reach-v9'"):
        MetaWorldScriptedPolicy("reach-v9")


def test_scripted_policies_exist_for_babyai_and_metaworld_only():
    assert POLICY_KINDS == ("expert", "scripted", "random")
    assert scripted_available(GOTO) and scripted_available(REACH)
    assert not scripted_available(PENDULUM)
    assert not scripted_available(get_task("atari-pong"))
