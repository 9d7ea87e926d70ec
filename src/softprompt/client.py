"""HTTP client for `softprompt serve` (no torch import): `Client(url, token).classify(adapter, text)`."""

from softprompt.serve.client import Client, ServeError

__all__ = ["Client", "ServeError"]
