"""Handler outputs by name: a dataclass whose field order is the order of a Gradio output list."""
from __future__ import annotations

import dataclasses


class NamedOutputs:
    """A handler's outputs by name; the field order is the order of the Gradio output list."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def values(self) -> list:
        return [getattr(self, n) for n in self.names()]

    def __iter__(self):
        return iter(self.values())

    def __len__(self) -> int:
        return len(dataclasses.fields(self))

    def __getitem__(self, i):
        return self.values()[i]
