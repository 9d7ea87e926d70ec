"""A method bound to one backbone and run: made once by `MethodConfig.resolve`, then passed down.

Its site is built for the backbone's layer count and its producer config is fitted to the run's
max_length (DePT sizes A by it); nothing downstream builds the site or fits the producer again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from softprompt.errors import ConfigError
from softprompt.sites import Site

if TYPE_CHECKING:
    from softprompt.methods.config import MethodConfig


@dataclass(frozen=True)
class ResolvedMethod:
    config: "MethodConfig"  # producer fitted to max_length
    site: Site | None  # None: the method has no prompt
    num_layers: int
    max_length: int
    backbone_name: str

    def resolve(self, num_layers: int, max_length: int | None = None, backbone: str | None = None) -> "ResolvedMethod":
        """Itself, for a backbone of the same layer count (its producer is already fitted: `max_length` is unused)."""
        if num_layers != self.num_layers:
            raise ConfigError(f"method: resolved for {self.backbone_name} ({self.num_layers} layers), "
                              f"used on {backbone or 'a backbone'} with {num_layers}")
        return self

    def with_producer(self, **changes: Any) -> "ResolvedMethod":
        """Producer settings that leave the site and the fitted length as they are (e.g. label words)."""
        return dataclasses.replace(self, config=self.config.with_producer(**changes))
