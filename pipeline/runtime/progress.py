"""The one progress display: rich bars on a terminal, nothing otherwise (`--no-progress`, logs, CI).

Every long stage (rollout, train-experts, publish, train-model, evaluate) shows its work through
`Bars`, so each bar starts, updates and stops the same way, and rich is imported only when a bar
is shown. A stage describes its columns once (`columns(rich.progress)` returns them) and its bars
by key.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


class Bars:
    """Progress bars keyed by the caller's names, or a silent no-op when `enabled` is False."""

    def __init__(self, enabled: bool, columns: Callable[[Any], tuple]) -> None:
        self.progress: Any = None
        self.tasks: dict[Hashable, Any] = {}
        if enabled:
            import rich.progress

            self.progress = rich.progress.Progress(*columns(rich.progress))
            self.progress.start()

    @property
    def shown(self) -> bool:
        return self.progress is not None

    def add(self, key: Hashable, total: float | None, description: str | None = None, **fields: Any) -> None:
        """A new bar; `fields` are the values the columns read (`{task.fields[name]}`)."""
        if self.progress is not None:
            self.tasks[key] = self.progress.add_task(
                str(key) if description is None else description, total=total, **fields
            )

    def update(self, key: Hashable, **changes: Any) -> None:
        """Move a bar: `completed=`, `advance=`, `total=`, `description=` or any of its fields."""
        if self.progress is not None and key in self.tasks:
            self.progress.update(self.tasks[key], **changes)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
