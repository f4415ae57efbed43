"""legoml-mnist: the MNIST app wiring every LegoML package."""
