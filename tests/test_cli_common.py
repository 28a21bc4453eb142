"""`pipeline.cli.common`: table cells, and a full disk told apart from every other failure."""

from __future__ import annotations

import errno

import pytest
from ray.exceptions import RayTaskError

from pipeline.cli.common import disk_full_cause, fmt_number


@pytest.mark.parametrize(
    ("value", "digits", "cell"), [(None, 2, "-"), (0.12345, 2, "0.12"), (3.0, 0, "3"), (-1.5, 3, "-1.500")]
)
def test_a_cell_shows_the_number_or_a_dash(value, digits, cell):
    assert fmt_number(value, digits) == cell


def _raised_in_worker(exc: OSError) -> RayTaskError:
    """What the driver receives when a Ray worker raised `exc` (the real wrapper, no cluster needed)."""
    try:
        raise exc
    except OSError as caught:
        return RayTaskError("RolloutWorker.run_unit", "Traceback ...", caught).as_instanceof_cause()


def test_a_full_disk_in_a_ray_worker_is_reported_as_the_workers_own_error():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/x.parquet")
    wrapped = _raised_in_worker(full)
    assert isinstance(wrapped, OSError) and wrapped.errno is None  # the wrapper carries no errno itself
    assert disk_full_cause(wrapped) is full


def test_a_quota_reported_in_the_text_only_counts_as_a_full_disk():
    quota = OSError("write failed: Disk quota exceeded")
    assert quota.errno is None and disk_full_cause(quota) is quota


def test_an_error_raised_while_cleaning_up_after_a_full_disk_counts_as_the_full_disk():
    full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise full
        except OSError:
            raise RuntimeError("could not remove the temporary shard")  # noqa: B904 (implicit context)
    except RuntimeError as cleanup:
        assert cleanup.__context__ is full and cleanup.__cause__ is None
        assert disk_full_cause(cleanup) is full


def test_other_failures_anywhere_in_the_chain_are_not_a_full_disk():
    denied = OSError(errno.EACCES, "Permission denied")
    assert disk_full_cause(_raised_in_worker(denied)) is None
    try:
        raise ValueError("bad shard") from denied
    except ValueError as exc:
        assert disk_full_cause(exc) is None


def test_a_cyclic_chain_ends_the_search():
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert disk_full_cause(first) is None
