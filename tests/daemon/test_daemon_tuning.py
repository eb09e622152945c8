"""What a daemon process sets up for holding many SAs cheaply."""

from __future__ import annotations

import subprocess
import sys
from types import MappingProxyType

from quickike.daemon.daemon import GC_YOUNG_THRESHOLD, Daemon
from quickike.engine.config import DaemonSettings, DataplaneKind, QuickikeConfig
from quickike.engine.dataplane import NullDataPlane, RecordingDataPlane


def test_tune_gc_raises_the_young_threshold_and_freezes_start_up() -> None:
    # in a child process: the collector's settings are process-wide
    code = ("import gc; from quickike.daemon.daemon import tune_gc; before = gc.get_threshold(); "
            "tune_gc(); print(before[1:] == gc.get_threshold()[1:], gc.get_threshold()[0], "
            "gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", str(GC_YOUNG_THRESHOLD), "True"]


def _daemon(kind: DataplaneKind) -> Daemon:
    config = QuickikeConfig(connections=MappingProxyType({}),
                            settings=DaemonSettings(dataplane=kind))
    return Daemon(config, state_dir="/nonexistent")


def test_dataplane_none_keeps_nothing_per_child() -> None:
    dp = _daemon(DataplaneKind.NONE)._make_dataplane()
    assert isinstance(dp, NullDataPlane)
    assert not hasattr(dp, "__dict__")  # slotted, stateless
    assert dp.counters(b"\x00\x00\x01\x00") is None


def test_dataplane_recording_still_records() -> None:
    assert isinstance(_daemon(DataplaneKind.RECORDING)._make_dataplane(), RecordingDataPlane)
