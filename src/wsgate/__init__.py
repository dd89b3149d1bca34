"""wsgate: WebSocket apps behind an edge proxy that work, stay private and stay diagnosable."""

__version__ = "0.1.0"
