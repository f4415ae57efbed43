"""``python -m legoml.track`` runs the ``legoml-track`` command."""

from legoml.track.cli import main

__all__: list[str] = []

raise SystemExit(main())
