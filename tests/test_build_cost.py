"""benchmarks/build_cost.py --quick writes a complete, traceable cost document.

The quick measurement really runs (rollouts of one task per suite, a tiny sb3 expert, a short
sample-factory training), so this is slow; it checks structure and provenance, never the speeds:
every section is there, every line with a figure says where the figure comes from, and the JSON
holds the raw measurements the document was rendered from.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "build_cost.py"
SECTIONS = (
    "## Rollout cost per 1,000 steps",
    "## Bytes per step on disk",
    "## Expert training throughput on CPU",
    "## GPU throughput (cited)",
    "## The full 157-task build, extrapolated",
    "## The import path (released experts), beside the training path",
    "## Ray resource layout per stage",
)
TAGS = ("measured", "cited", "assumed", "registry", "code", "formula", "not measured")
SUITES = ("atari", "babyai", "metaworld", "mujoco")


def untagged_figure_lines(doc: str) -> list[str]:
    """Table rows and bullets below the header that hold a digit but name no source (a bullet's
    indented continuation lines belong to it)."""
    lines = doc[doc.index("\n## ") :].splitlines()
    items: list[str] = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if line.startswith("  ") and items and items[-1].startswith("- "):
            items[-1] += " " + line.strip()
            continue
        is_row = line.startswith("|") and not set(line) <= set("|- ")
        header = following.startswith("| ---")  # a table's header row names columns, not figures
        if line.startswith("- ") or (is_row and not header):
            items.append(line)
    return [item for item in items if re.search(r"\d", item) and not any(tag in item for tag in TAGS)]


def test_untagged_lines_are_found() -> None:
    """The provenance check itself: a figure without a tag is caught, a tagged one is not."""
    table = "| CPU-s / 1k | tag |\n| --- | --- |\n| a | 1.5 | measured |\n| b | 2 | |\n"
    doc = "# t\n## s\n" + table + "- 3 cores\n- none\n- 4 GPUs\n  (cited)\n"
    assert untagged_figure_lines(doc) == ["| b | 2 | |", "- 3 cores"]


def test_the_committed_figures_render_again_into_the_committed_doc(tmp_path: Path) -> None:
    """The extrapolation reads today's registry: docs/scaling.json must still render, figure for figure."""
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--from-json",
            str(ROOT / "docs" / "scaling.json"),
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    doc, committed = (tmp_path / "scaling.md").read_text(), (ROOT / "docs" / "scaling.md").read_text()
    assert doc[doc.index("\n## ") :] == committed[committed.index("\n## ") :]
    assert untagged_figure_lines(doc) == []


def test_figures_from_before_the_import_measurement_still_render(tmp_path: Path) -> None:
    """A scaling.json written before the import path was measured renders, saying it was not measured."""
    raw = json.loads((ROOT / "docs" / "scaling.json").read_text())
    assert raw["imports"]["suites"], "the committed figures hold the import path"
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in raw.items() if k != "imports"}))
    subprocess.run(
        [sys.executable, str(SCRIPT), "--from-json", str(old), "--out", str(tmp_path / "doc")],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    doc = (tmp_path / "doc" / "scaling.md").read_text()
    section = doc[doc.index("## The import path") : doc.index("## Ray resource layout")]
    assert "Not measured in this run" in section and "--measure-import" in section
    assert untagged_figure_lines(doc) == []


def test_committed_import_figures_are_sample_factorys_own() -> None:
    """Per suite with released experts: the checkpoint an import reads is the one sample-factory wrote,
    the rebuilt one is within 1% of it, and every task with a released expert has a size."""
    raw = json.loads((ROOT / "docs" / "scaling.json").read_text())
    rows = {row["suite"]: row for row in raw["imports"]["suites"]}
    assert set(rows) == {"atari", "mujoco", "metaworld"}
    for suite, row in rows.items():
        assert row["checkpoint_file"] in row["experiment_files"] and row["checkpoint_file"] in row["needed"]
        assert not any("milestones" in name for name in row["needed"])
        rebuilt = row["rebuilt"][row["config"]]["bytes"]
        assert abs(rebuilt - row["checkpoint_bytes"]) < 0.01 * row["checkpoint_bytes"], suite
        assert len(row["rebuilt"]) == {"atari": 57, "mujoco": 11, "metaworld": 50}[suite]
    humanoid = rows["mujoco"]["rebuilt"]["mujoco-humanoid"]
    assert humanoid["observation"] == [376] and humanoid["bytes"] > rows["mujoco"]["checkpoint_bytes"]


@pytest.mark.slow
def test_quick_run_writes_every_section_with_tagged_figures(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = (out / "scaling.md").read_text()
    for section in SECTIONS:
        assert section in doc, f"missing section {section!r}"
    head = doc[: doc.index("\n## ")]
    for needle in ("build_cost.py --quick", "nproc", "CPU model", "gymnasium", "sample-factory"):
        assert needle in head, f"header lacks {needle!r}"
    assert untagged_figure_lines(doc) == []

    raw = json.loads((out / "scaling.json").read_text())
    measured = [r for r in raw["rollouts"] if "error" not in r]
    assert {r["suite"] for r in measured} == set(SUITES), "a suite has no measured rollout"
    for row in measured:
        assert row["cpu_s_per_step"] > 0 and row["bytes_per_step"] > 0
        assert row["long"]["steps"] > row["short"]["steps"]
        # every measured cost in the doc is the JSON's figure
        assert (
            f"| {row['config']} | {row['policy']} ({row['backend']}) | {1000 * row['cpu_s_per_step']:.3f} |"
            in doc
        )
    build = raw["extrapolation"]["suites"]
    assert sum(s["tasks"] for s in build.values()) == 157
    assert build["atari"]["budget"] == {"steps": 500_000}  # read from the registry, not typed in
    assert build["mujoco"]["expert_steps"] > 0 and build["babyai"]["expert_steps"] == 0
    for suite in ("babyai", "metaworld"):
        assert build[suite]["rollout_core_h"] > 0 and build[suite]["storage_bytes"] > 0
    assert any(r["backend"] == "sb3" and "error" not in r for r in raw["experts"])
    assert any(t["config"] == "mujoco-hopper" and t.get("steps_per_cpu_s") for t in raw["training"])
    (imported,) = raw["imports"]["suites"]  # --quick: MuJoCo only
    assert imported["suite"] == "mujoco" and imported["checkpoint_bytes"] > 0, imported
    assert len(imported["rebuilt"]) == 11

    # the doc is a pure function of the raw figures: rendering it again from the JSON changes no figure
    again = tmp_path / "again"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--from-json", str(out / "scaling.json"), "--out", str(again)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    rerendered = (again / "scaling.md").read_text()
    assert rerendered[rerendered.index("\n## ") :] == doc[doc.index("\n## ") :]
