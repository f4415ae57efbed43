"""structlog set-up for the command line: readable lines on stderr, stdout kept for results.

Also the phase clock: where the wall time of a command goes (imports, data, build, train,
eval, writes). ``LEGOML_PROFILE=1`` logs the phase times at the end of a training run;
``LEGOML_PROFILE=path.json`` also writes them there (``benchmarks/bench_end_to_end.py``
reads that file), so the breakdown always comes from the real process.

A command-line process also freezes its start-up objects out of the garbage collector's
reach once training is built and at exit (``freeze_startup_objects``; ~1 s per run here,
``LEGOML_GC_FREEZE=0`` turns it off for A/B measurements).
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import structlog

__all__ = [
    "PHASES",
    "PhaseClock",
    "configure_logging",
    "enable_startup_freeze",
    "freeze_startup_objects",
    "process_age",
]

PROFILE_ENV = "LEGOML_PROFILE"
_command_line = False


def freeze_startup_objects() -> None:
    """In a ``legoml-mnist train`` process only: move every object alive now (torch's,
    torch._dynamo's, LegoML's: ~400k) to the collector's permanent generation, so no later
    collection, nor the one at exit, walks them again. A library caller (a test, a
    notebook, a sweep) keeps its collector untouched."""
    if _command_line and os.environ.get("LEGOML_GC_FREEZE", "1") != "0":
        gc.freeze()


def _running_as_command() -> bool:
    """True in the ``legoml-mnist`` console script and under ``python -m legoml_mnist``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and str(spec.name).startswith("legoml_mnist"):
        return True
    return Path(getattr(main, "__file__", None) or "").stem == "legoml-mnist"


def enable_startup_freeze() -> None:
    """Called by ``legoml-mnist train`` (one run per process): let ``freeze_startup_objects``
    act, and run it at exit too. Long-lived processes (a sweep's trials, tests, notebooks)
    never call it, so their collector stays untouched."""
    global _command_line
    if not _command_line and _running_as_command():
        _command_line = True
        atexit.register(freeze_startup_objects)  # skip the walk over every object at exit


def configure_logging(level: str | None = None) -> None:
    """Send structlog events to stderr at ``level`` (default ``$LEGOML_LOG_LEVEL`` or info)."""
    PHASES.mark("imports")  # the command's first act: everything before it is start-up
    name = (level or os.environ.get("LEGOML_LOG_LEVEL") or "info").upper()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, name, logging.INFO)),
        # the stderr of the moment, not the one at configuration (tests swap and close it)
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``, 10 ms resolution), else None."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class PhaseClock:
    """Wall and process CPU seconds spent in each named phase: ``mark(name)`` closes the
    phase that ran since the previous mark (the first one since the process started, when
    known). CPU seconds tell a slow phase from a machine busy with other work."""

    def __init__(self) -> None:
        age = process_age()
        self._last = time.perf_counter() - (age or 0.0)
        self._last_cpu = 0.0  # process CPU time counts from the process's start
        self.started_unix = time.time() - (age or 0.0)
        self.phases: dict[str, float] = {}
        self.phases_cpu: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._last
        self.phases_cpu[name] = self.phases_cpu.get(name, 0.0) + cpu - self._last_cpu
        self._last, self._last_cpu = now, cpu

    def snapshot(self) -> dict[str, Any]:
        """The phases so far, with the wall clock at the last mark (for a parent process)."""
        return {
            "phases": {name: round(seconds, 4) for name, seconds in self.phases.items()},
            "phases_cpu": {name: round(seconds, 4) for name, seconds in self.phases_cpu.items()},
            "process_started_unix": self.started_unix,
            "last_mark_unix": time.time() - (time.perf_counter() - self._last),
        }

    def publish(self, **extra: Any) -> None:
        """Log the phases (and write them to ``$LEGOML_PROFILE`` when it names a file)."""
        target = os.environ.get(PROFILE_ENV)
        if not target:
            return
        data = {**self.snapshot(), **extra}
        structlog.get_logger(__name__).info("phase_times", **data["phases"])
        if target not in ("1", "true", "yes"):
            Path(target).write_text(json.dumps(data, indent=2) + "\n")


PHASES = PhaseClock()
"""The process-wide phase clock of the command line."""
