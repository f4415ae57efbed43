"""``python -m legoml.data [ROOT] [--dataset NAME | --all]``: prepare and verify datasets."""

import sys

import structlog

from legoml.data.mnist import main

# As a command, progress events go to stderr so stdout holds only the result lines.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
raise SystemExit(main())
