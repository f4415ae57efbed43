"""``legoml-mnist`` on a misbehaving disk, for the subprocess reliability tests.

``python slow_checkpoint_writer.py train ...`` runs the real CLI, unchanged, after patching
the OS layer:

- ``LEGOML_TEST_FSYNC_DELAY`` (seconds, default 0.3): each fsync of a temporary file in a
  ``checkpoints`` folder takes that long, so a kill can land while a checkpoint is half-saved;
- ``LEGOML_TEST_FAULT=ERRNO:WHERE:MATCH:AFTER`` (e.g. ``EIO:fsync:checkpoints:3``): after
  ``AFTER`` matching calls succeed, ``WHERE`` (write, fsync or replace) fails with ``ERRNO``
  for paths containing ``MATCH`` under the current directory (see fault_helpers.FailingWrites).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

_real_fsync = os.fsync
_DELAY = float(os.environ.get("LEGOML_TEST_FSYNC_DELAY", "0.3"))


def _slow_fsync(fd: int) -> None:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = ""
    if "/checkpoints/" in target and target.endswith(".tmp"):
        time.sleep(_DELAY)
    _real_fsync(fd)


os.fsync = _slow_fsync

if __name__ == "__main__":
    fault = os.environ.get("LEGOML_TEST_FAULT")
    if fault:
        sys.path.insert(0, str(Path(__file__).parent))
        from fault_helpers import FailingWrites

        name, where, match, after = fault.split(":")
        FailingWrites(Path.cwd(), getattr(errno, name), where, match, int(after)).__enter__()

    from legoml_mnist.cli import main

    sys.exit(main(sys.argv[1:]))
