"""``python -m legoml_mnist`` behaves like the ``legoml-mnist`` command."""

from legoml_mnist.cli import main

raise SystemExit(main())
