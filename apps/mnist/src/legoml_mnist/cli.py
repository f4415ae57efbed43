"""The ``legoml-mnist`` command."""

import sys


def main(argv: list[str] | None = None) -> int:
    sys.stderr.write("error: legoml-mnist is not wired yet\n")
    return 2
