"""legoml-metrics."""

__all__: list[str] = []
