"""The CLI's tables fit an 80-column terminal without cutting a name: other columns wrap or shorten,
what does not fit a cell follows as a note, and `--json` has every field whole."""

from __future__ import annotations

import io
import json

from rich.console import Console

from experts.base import ExpertStatus
from experts.training import ExpertResult
from pipeline.cli import main
from pipeline.cli.experts import _expert_table, _notes
from pipeline.tasks.registry import all_tasks


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_tasks_table_fits_80_columns_with_every_name_whole(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["tasks"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert max(len(line) for line in lines) <= 80
    firsts = {line.split()[0] for line in lines if line.strip()}
    assert set(all_tasks()) <= firsts  # 156 of 157 were cut ("mujoco-doubl…") at 80 columns
    assert not any("…" in line for line in lines)
    assert lines[-1] == "expert, random: JAT's mean returns; env ids: --json"
    monkeypatch.setenv("COLUMNS", "120")  # wide enough: the env ids are shown
    assert main(["tasks", "--suite", "mujoco"]) == 0
    assert "InvertedDoublePendulum-v4" in capsys.readouterr().out
    assert main(["tasks", "--suite", "mujoco", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 11


def test_expert_table_fits_80_columns_and_notes_what_does_not_fit():
    longest = max(all_tasks(), key=len)
    evaluation = {"mean_return": 123.456, "std_return": 7.89, "success_rate": 0.5, "normalised": 0.123}
    results = [
        ExpertResult(longest, "sample-factory", ExpertStatus.REJECTED, 8192, 30.0, evaluation, budget="flat"),
        ExpertResult("mujoco-hopper", "sb3", ExpertStatus.FAILED, error="Ray task died: OOM"),
    ]
    out = io.StringIO()
    Console(file=out, width=80).print(_expert_table("experts in /tmp/e", results, 80))
    lines = _lines(out.getvalue())
    assert max(len(line) for line in lines) <= 80, out.getvalue()
    assert any(line.startswith(longest + " ") for line in lines), out.getvalue()
    assert not any("…" in line for line in lines), out.getvalue()
    assert "123.5±7.9" in out.getvalue() and "rejected" in out.getvalue()
    wide = io.StringIO()
    Console(file=wide, width=120).print(_expert_table("experts in /tmp/e", results, 120))
    assert "sample-factory" in wide.getvalue() and "0.5 min" in wide.getvalue()  # shown where they fit
    assert _notes(results) == ["mujoco-hopper failed: Ray task died: OOM", f"{longest}, budget to 0.9: flat"]
