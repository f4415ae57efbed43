"""``legoml-mnist`` with a slow disk under checkpoints/: each fsync of a file in a
``checkpoints`` folder takes a while, so a kill can land while a checkpoint is half-saved.

Used by the kill-and-resume tests as ``python slow_checkpoint_writer.py train ...``; the
training itself is the real CLI, unchanged. ``LEGOML_TEST_FSYNC_DELAY`` sets the delay.
"""

from __future__ import annotations

import os
import sys
import time

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
    from legoml_mnist.cli import main

    sys.exit(main(sys.argv[1:]))
