"""legoml-track."""

__all__: list[str] = []
