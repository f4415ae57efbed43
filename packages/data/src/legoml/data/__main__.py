"""``python -m legoml.data``: prepare and verify MNIST under the dataset root."""

from legoml.data.mnist import main

raise SystemExit(main())
