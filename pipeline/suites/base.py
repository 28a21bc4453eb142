"""What a suite is: the one interface through which the rest of the package meets a suite.

Everything that differs between suites (Atari, BabyAI, Meta-World, MuJoCo, DeepMind Control) is an
attribute or a method here, overridden by the suite's own module in `pipeline/suites/`; the tasks
themselves (env ids, spaces, scores, per-suite defaults) are data in `env_configs/<suite>.yaml`.
Code outside the suite modules asks the suite (`pipeline.suites.get_suite(spec.suite)`) and never
branches on a suite's name, so adding a suite is one module and one YAML, as LeRobot's
`EnvConfig.register_subclass` and sample-factory's `register_env` make it one place each.

The defaults are those of a vector suite (continuous observations and actions, drawn through
MuJoCo's renderer), the most common kind; a suite overrides what differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.suites.layouts import VECTOR, Layout

if TYPE_CHECKING:
    import gymnasium as gym

    from pipeline.tasks.policies import Policy
    from pipeline.tasks.registry import TaskSpec

Grab = Callable[[Any, Any], Any]
"""(env, its latest observation as the env returned it) -> an RGB frame of that state."""


class Suite(ABC):
    """One suite's code. A subclass sets `name` and overrides what differs from a vector suite."""

    name: ClassVar[str]
    title: ClassVar[str]
    """How people write the suite's name (cards, reports, plots)."""
    layout: ClassVar[Layout] = VECTOR
    """JAT's stored columns for the suite, and the conversion between observations and columns."""
    fps: ClassVar[float] = 30.0
    """Frames per second of its videos and clips, unless `fps_for` says otherwise for a task."""
    needs_gl: ClassVar[bool] = True
    """Drawing a frame needs OpenGL (MuJoCo's renderer): without it, clips are left out."""
    packages: ClassVar[tuple[str, ...]] = ()
    """Distributions whose versions decide its episodes: recorded in manifests and expert metadata."""
    scripted_expert: ClassVar[str | None] = None
    """The expert backend that plays its tasks without training, if the suite ships a scripted policy."""
    human_scores: ClassVar[bool] = False
    """Its registry holds human reference scores, so reports show human-normalised scores too."""
    context_steps: ClassVar[int] = 256
    """The JAT model's context for the suite, in steps (one observation and one action each), JAT's value."""
    context_option: ClassVar[str] = "context_steps"
    """The `train-model` option (a field of `TrainModelConfig`) that sets its context: `--context`."""
    jat_eval_context_steps: ClassVar[int] = 128
    """The context JAT's own evaluation used for the suite (`pipeline.model.convert_jat`)."""
    success_from_rewards: ClassVar[bool] = False
    """An episode succeeded exactly when a stored reward is positive, so `validate` can recompute the
    manifest's success claim from the stored rows (BabyAI); elsewhere success comes from env info."""

    def register_envs(self) -> None:
        """Register the suite's env ids with gymnasium (called once per process, before any make)."""
        return None  # gymnasium registers its own envs (MuJoCo's) when imported

    @abstractmethod
    def make_env(self, spec: TaskSpec, max_episode_steps: int | None) -> gym.Env:
        """The task's env, returning observations in JAT's stored form (`layout`)."""

    def step_success(
        self, spec: TaskSpec, terminated: bool, reward: float, info: dict[str, Any]
    ) -> bool | None:
        """Did this step succeed? The env's `success` flag where it has one, else unknown (None)."""
        return bool(info["success"]) if "success" in info else None

    def fps_for(self, spec: TaskSpec) -> float:
        """Frames per second of the task's videos and clips: the suite's `fps`, or the task's own rate
        where its tasks step at different rates (DeepMind Control: 1 / its control timestep)."""
        return self.fps

    def atari_semantics(self, spec: TaskSpec) -> str | None:
        """How the task's envs act where the registry offers a choice (Atari's `env.atari_semantics`),
        recorded in the rollout's plan so that replay builds the env that recorded; None elsewhere."""
        return None

    def scripted_policy(self, spec: TaskSpec) -> Policy | None:
        """The suite's hand-written policy for the task (`--policy scripted`), or None."""
        return None

    def frame_grabber(self, spec: TaskSpec, env: Any, size: int) -> Grab:
        """A function drawing the env's current state as an RGB frame, `size` pixels a side where
        the suite draws at a chosen size; raises `pipeline.suites.drawing.NoGL` when it cannot draw here."""
        from pipeline.suites.drawing import mujoco_grabber

        return mujoco_grabber(spec, env, size)

    def __repr__(self) -> str:
        return f"<suite {self.name}>"
