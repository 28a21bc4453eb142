"""sample-factory's compatibility fixes on its real classes: the numpy >= 2.4 TensorDict fix and the
bounded env-info probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_one_element_arrays_go_into_scalar_slots():
    from sample_factory.algo.utils.tensor_dict import TensorDict

    import experts.sf_compat as compat

    compat.apply()
    buffers = TensorDict({"values": np.zeros(4, np.float32), "policy": TensorDict({"t": torch.zeros(4)})})
    buffers[2] = {"values": np.array([1.5], np.float32), "policy": {"t": torch.tensor([2.5])}}
    assert buffers["values"][2] == 1.5 and float(buffers["policy"]["t"][2]) == 2.5
    buffers[1] = {"values": torch.tensor([3.0])}  # torch source, numpy target
    assert buffers["values"][1] == 3.0


def test_shape_mismatches_of_other_sizes_still_fail():
    from sample_factory.algo.utils.tensor_dict import TensorDict

    import experts.sf_compat as compat

    compat.apply()
    buffers = TensorDict({"values": np.zeros(4, np.float32)})
    with pytest.raises(ValueError):
        buffers[0] = {"values": np.array([1.0, 2.0], np.float32)}


def test_numpy_still_needs_the_fix():
    """If numpy ever accepts this again, the patch can go: this test says so."""
    target = np.zeros(4, np.float32)
    with pytest.raises((ValueError, TypeError)):
        target[0] = np.array([1.0], np.float32)


def test_one_element_arrays_still_broadcast_into_wider_slots():
    from sample_factory.algo.utils.tensor_dict import TensorDict

    import experts.sf_compat as compat

    compat.apply()
    buffers = TensorDict({"values": np.zeros((4, 3), np.float32), "t": torch.zeros(4, 3)})
    buffers[1] = {"values": np.array([2.0], np.float32), "t": torch.tensor([4.0])}
    assert buffers["values"][1].tolist() == [2.0] * 3 and buffers["t"][1].tolist() == [4.0] * 3


def _dies_at_once(*args, **kwargs):
    """An env factory whose process dies when it is called (module level: the probe's child imports it)."""
    import os

    os._exit(3)


def test_the_env_info_probe_stops_naming_the_exit_code_when_its_process_dies(monkeypatch):
    """sample-factory's own probe waited forever on its queue for a child that had died."""
    from sample_factory.algo.runners import runner
    from sample_factory.algo.utils.context import global_env_registry
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args

    import experts.sf_compat as compat

    compat.apply()
    monkeypatch.setitem(global_env_registry(), "dies-at-once", _dies_at_once)
    argv = ["--env=dies-at-once", "--use_env_info_cache=False"]
    parser, _ = parse_sf_args(argv=argv, evaluation=False)
    with pytest.raises(RuntimeError, match=r"env-info process for dies-at-once died \(exit code 3\)"):
        runner.obtain_env_info_in_a_separate_process(parse_full_cfg(parser, argv))
