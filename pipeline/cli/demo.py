"""`pipeline demo` (what `make demo` runs): a small, real end-to-end run on the embedded defaults.

One task per suite is recorded on a local Ray cluster into a local folder — BabyAI with the
bot, Meta-World with its scripted policy, MuJoCo and Atari with a random policy until trained
experts exist — then validated and loaded back with `datasets.load_dataset`, as a user would.
"""

from __future__ import annotations

import logging
import time

from rich.console import Console

from pipeline.checks.validate import validate
from pipeline.configs.datasets import DemoConfig, ValidateConfig
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime import noise
from pipeline.runtime.tables import narrow_table

log = logging.getLogger(__name__)

# (tasks, policy) per rollout call: the best policy each suite has without training.
DEMO_RUNS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("babyai-go-to", "metaworld-reach"), None),  # suite defaults: BabyAI bot, Meta-World scripted
    (("mujoco-hopper", "atari-breakout"), "random"),
)


def demo(config: DemoConfig) -> int:
    console = Console(soft_wrap=True)
    started = time.monotonic()
    for tasks, policy in DEMO_RUNS:
        console.rule(f"rollout {', '.join(tasks)} ({policy or 'suite default policy'})")
        rollout(
            RolloutConfig(
                out=config.out,
                tasks=tasks,
                episodes=config.episodes,
                workers=config.workers,
                policy=policy,
                overwrite=config.overwrite,
            )
        )
    console.rule("validate")
    report = validate(ValidateConfig(config.out))
    for c in report.configs:
        console.print(f"{c.config:<20} {'ok' if c.ok else 'FAILED'}: {c.episodes} episodes, {c.steps} steps")
        for error in c.errors:
            console.print(f"    {error}", markup=False)
    if not report.ok:
        return 1
    console.rule("load back with datasets.load_dataset")
    import datasets

    table = narrow_table(f"load_dataset({config.out!r}, config)")
    table.add_column("config", no_wrap=True)
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    table.add_column("features", no_wrap=True)  # names: one a line, never cut
    table.add_column("first episode")
    quiet = not noise.is_verbose() and not datasets.are_progress_bars_disabled()
    if quiet:  # its "Generating train split" bars, two per config
        datasets.disable_progress_bars()
    try:
        for c in report.configs:
            ds = datasets.load_dataset(config.out, c.config)
            first = ds["train"][0]
            table.add_row(
                c.config,
                str(ds["train"].num_rows),
                str(ds["test"].num_rows),
                "\n".join(ds["train"].features),
                f"{len(first['rewards'])} steps, return {sum(first['rewards']):.2f}",
            )
    finally:
        if quiet:
            datasets.enable_progress_bars()
    Console().print(table)
    console.print(f"demo finished in {time.monotonic() - started:.0f} s → {config.out}")
    return 0
