"""legoml-nn."""

__all__: list[str] = []
