"""The suite's learning-curve figure covers the whole run on the data's own scale."""

from __future__ import annotations

from types import SimpleNamespace

from matplotlib.figure import Figure

from experts.report import _panel
from pipeline.tasks.registry import get_task


def test_a_panel_runs_to_the_steps_trained_with_the_evaluation_and_the_references_marked():
    """sample-factory's last curve row was at 4,096 steps of 8,192 trained, and the axis ran up to JAT's
    expert (475), so a weak expert was a flat line that stopped halfway."""
    rows = [
        {"steps": 0.0, "mean_return": 6.6, "wall_time_s": 14.0},
        {"steps": 4096.0, "mean_return": 8.3, "wall_time_s": 15.6},
    ]
    metadata = SimpleNamespace(steps_trained=8192, evaluation={"mean_return": 28.0, "std_return": 2.0})
    ax = Figure().add_subplot()
    _panel(ax, "mujoco-pendulum", rows, metadata)
    assert ax.get_xlim()[1] >= 8192
    low, high = ax.get_ylim()
    assert low <= 6.6 and 30.0 <= high < 60  # the data's scale, not JAT's expert's 475
    expert = get_task("mujoco-pendulum").scores.expert_mean
    assert [t.get_text() for t in ax.texts] == [f"JAT expert ({expert:.4g}) ↑"]
    labels = ax.get_legend_handles_labels()[1]
    assert "evaluation (± std)" in labels and "end of training" in labels
    assert any(label.startswith("JAT random (") for label in labels)  # 6.07: within the data, a line
