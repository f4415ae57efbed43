"""``legoml-mnist`` on a misbehaving disk, for the subprocess reliability tests.

``python slow_checkpoint_writer.py train ...`` runs the real CLI, unchanged, after patching
the OS layer:

- ``LEGOML_TEST_FSYNC_DELAY`` (seconds, default 0.3): each fsync of a temporary file in a
  ``checkpoints`` folder takes that long, so a kill can land while a checkpoint is half-saved;
- ``LEGOML_TEST_FAULT=ERRNO:WHERE:MATCH:AFTER`` (e.g. ``EIO:fsync:checkpoints:3``): after
  ``AFTER`` matching calls succeed, ``WHERE`` (write, fsync or replace) fails with ``ERRNO``
  for paths containing ``MATCH`` under the current directory (see fault_helpers.FailingWrites);
- ``LEGOML_TEST_NAN_AT_STEP=K``: the K-th training loss (a call of cross_entropy with
  gradients on) comes out NaN, as if the model had diverged there.
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

    nan_at = int(os.environ.get("LEGOML_TEST_NAN_AT_STEP", "0"))
    if nan_at:
        import torch
        import torch.nn.functional as functional

        real_cross_entropy = functional.cross_entropy
        calls = [0]

        def cross_entropy(*args: object, **kwargs: object) -> torch.Tensor:
            loss = real_cross_entropy(*args, **kwargs)  # type: ignore[arg-type]
            if torch.is_grad_enabled():
                calls[0] += 1
                if calls[0] == nan_at:
                    return loss * float("nan")
            return loss

        functional.cross_entropy = cross_entropy  # type: ignore[assignment]

    from legoml_mnist.cli import main

    sys.exit(main(sys.argv[1:]))
