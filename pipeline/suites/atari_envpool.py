"""Atari with envpool's semantics: what JAT's Sample Factory experts saw, one whole game per episode.

JAT's Atari experts (`edbeeching/atari_2B_atari_<game>_1111`) were trained and recorded on envpool's
Atari env (`sf_examples/envpool/atari`: `envpool.make(..., reward_clip=True, episodic_life=True)`, its
defaults otherwise, `EnvPoolResetFixWrapper` resetting an env the moment it reports done). This
module re-implements that env in Python on the ALE of ale-py, following envpool's C++
(`envpool/atari/atari_env.h`, `AtariEnv::Reset`/`Step`/`PushStack`) operation by operation:

- ALE: `frameskip=1`, `repeat_action_probability=0`, the minimal action set; every `act` below is
  one emulator frame. ALE's own frame limit is off: the limit is envpool's, counted in agent steps.
- New game (`reset`): `reset_game()`, then `n` NOOP frames with `n = U{0, noop_max-1} + 1 - fire`,
  i.e. 1..noop_max, one fewer when the game's action set has FIRE (ALE action 1; envpool issue
  221), then one FIRE frame for those games. A game over during the NOOPs resets the game again.
  The screen after the last of these frames, grey, is resized and fills the whole 4-frame stack.
  envpool draws `n` from its own `std::mt19937`; here it comes from the env's seeded numpy
  generator (the same distribution, not the same draws), so an episode depends on its seed alone.
- Grey: ALE's `getScreenGrayscale`, the same palette function (`applyPaletteGrayscale`) envpool
  calls; resize 210x160 -> 84x84 with OpenCV's `INTER_AREA` (envpool `use_inter_area_resize=True`).
- Step: the action for up to `frame_skip` (4) frames, summing rewards, stopping at game over; the
  grey screens of the last two frames are max-pooled, pixel by pixel. A game that ends on the first
  or second frame pushes the previous pooled frame again, on the third frame that frame alone
  (envpool pools only when all frames ran). The new frame is pushed to the stack, oldest dropped.
- Step limit: 27000 agent steps (envpool's `max_episode_steps`, 108000 frames; reset NOOPs not
  counted) over the whole game, lives included; reaching it truncates.
- Life loss (`episodic_life=True`): envpool reports done when 0 < lives < previous lives; Sample
  Factory then resets that env at once, and envpool (the versions JAT used, before envpool PR 344)
  continues the same game: no `reset_game`, the same NOOPs and FIRE as above, and the new screen
  is pushed onto the stack (not repeated). This env does that inside the step that lost the life
  and returns the post-reset stack, which is what the expert saw next. The stored episode is the
  whole game: `terminated` only at game over, no done at a life loss (`info["life_loss"]` marks it).
- Rewards: the game's, unclipped (envpool's `reward_clip` clips only what the learner sees; the
  expert's network does not read rewards). Rewards of the NOOP/FIRE frames after a life loss,
  which envpool drops, are added to the step that lost the life, so an episode's return is the
  game's score. (Rewards during a new game's NOOPs are dropped by envpool and here alike.)

Deviations, all outside what a policy sees while a game goes on: the NOOP counts are drawn from
another generator; each seeded reset starts from the freshly loaded ROM (envpool's env reuses its
emulator across games; see `FastSeededReset`); a game over during the NOOPs after a life loss ends
the episode here (envpool would start a new game within the same stream).
`tests/test_atari_envpool.py` checks all of this frame by frame against envpool itself.
"""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from ale_py import Action

ENVPOOL_STEP_LIMIT = 27000
"""envpool's Atari `max_episode_steps` (agent steps; 108000 frames at frame skip 4)."""


class EnvpoolAtari(gym.Env):
    """envpool's Atari preprocessing and life-loss reset on an ale-py env, one whole game per episode.

    `ale_env` is `gym.make("ALE/<Game>-v5", frameskip=1, repeat_action_probability=0.0,
    max_num_frames_per_episode=0)`; observations are uint8 (84, 84, 4), channels last, oldest first.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        ale_env: gym.Env,
        *,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 84,
        frame_stack: int = 4,
        step_limit: int = ENVPOOL_STEP_LIMIT,
        fire_reset: bool = True,
        episodic_life: bool = True,
    ) -> None:
        if noop_max < 1 or frame_skip < 1 or frame_stack < 1 or step_limit < 1:
            raise ValueError(
                "noop_max, frame_skip, frame_stack and step_limit must be >= 1 (envpool's ranges)"
            )
        atari = ale_env.unwrapped
        self.env = ale_env
        self.ale = atari.ale
        if float(self.ale.getFloat("repeat_action_probability")) != 0.0 or self.ale.getInt("frame_skip") > 1:
            raise ValueError(
                "envpool semantics need frameskip=1 and repeat_action_probability=0 in the ALE env"
            )
        self._atari = atari
        self._actions = list(atari._action_set)  # ale-py's minimal (or full) action set, in its order
        self.fire_reset = fire_reset and Action.FIRE in self._actions
        self.noop_max, self.frame_skip, self.step_limit = noop_max, frame_skip, step_limit
        self.episodic_life = episodic_life
        self._size = (screen_size, screen_size)
        h, w = self.ale.getScreenDims()
        self._pool = [np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)]
        self._stack = np.zeros((frame_stack, screen_size, screen_size), np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, (screen_size, screen_size, frame_stack), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self._actions))
        self._loaded: Any = None  # emulator state right after the ROM load
        self._elapsed = 0
        self._lives = 0

    # -- envpool's AtariEnv::Reset, the part after the game is (or is not) reset ------------------
    def _start_life(self, new_game: bool) -> tuple[float, bool]:
        """NOOPs, FIRE and the first frame; returns (reward of those frames, game over)."""
        noops = int(self.np_random.integers(0, self.noop_max)) + 1 - int(self.fire_reset)
        push_all, reward = new_game, 0.0
        if new_game:
            self.ale.reset_game()
            self._elapsed = 0
        for _ in range(noops):
            reward += self.ale.act(Action.NOOP)
            if self._game_over():
                if not new_game:  # the game ended after a life loss: the episode (one game) ends
                    return reward, True
                self.ale.reset_game()
        if self.fire_reset:
            reward += self.ale.act(Action.FIRE)
            if self._game_over() and not new_game:
                return reward, True
        self.ale.getScreenGrayscale(self._pool[0])
        self._push(maxpool=False)
        if push_all:  # a new game: the first frame fills the stack
            self._stack[:] = self._stack[-1]
        self._lives = self.ale.lives()
        return reward, False

    def _game_over(self) -> bool:
        return bool(self.ale.game_over(with_truncation=False))

    def _push(self, maxpool: bool) -> None:
        """envpool's PushStack: pool the two last frames in place (into the first), resize, push."""
        if maxpool:
            np.maximum(self._pool[0], self._pool[1], out=self._pool[0])
        frame = cv2.resize(self._pool[0], self._size, interpolation=cv2.INTER_AREA)
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = frame

    def _observation(self) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(self._stack, 0, -1))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        if seed is not None:  # the same emulator start for every seeded episode (see FastSeededReset)
            if self._loaded is None:
                self._atari.seed_game(seed)
                self._atari.load_game()
                self._loaded = self.ale.cloneState(include_rng=True)
            else:
                self.ale.restoreState(self._loaded)
        self._start_life(new_game=True)
        return self._observation(), {"lives": self._lives, "life_loss": False}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        ale_action = self._actions[int(action)]
        reward, over = 0.0, False
        skip, pooled = self.frame_skip, min(self.frame_skip, 2)
        while skip > 0 and not over:
            reward += self.ale.act(ale_action)
            over = self._game_over()
            if skip <= pooled:
                self.ale.getScreenGrayscale(self._pool[pooled - skip])
            skip -= 1
        self._push(maxpool=self.frame_skip > 1 and skip == 0)
        self._elapsed += 1
        truncated = self._elapsed >= self.step_limit and not over
        lives = self.ale.lives()
        life_loss = 0 < lives < self._lives
        self._lives = lives
        if life_loss and self.episodic_life and not (over or truncated):
            extra, over = self._start_life(new_game=False)
            reward += extra
        info = {"lives": self.ale.lives(), "life_loss": life_loss}
        return self._observation(), float(reward), over, truncated, info

    def close(self) -> None:
        self.env.close()
