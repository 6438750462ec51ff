"""Speed levers: switches that may make a denoising step faster, each timed without and with.

A lever is data: a name and a function that turns it on for a built step (the model and its
inputs). The levers cell builds two identical steps per lever (same seed), turns the lever on in
one of them (and, if the lever says how, explicitly off in the other), then times all of them
round-robin in one process, so the ratios hold on a busy machine. To register a lever, add a
``Lever`` to ``LEVERS``:

    def faster_temporal_conv(step: Step) -> Step:
        swap_temporal_convs(step.model)        # in place, or assign step.model / step.x
        return step

    LEVERS.append(Lever("faster temporal conv", faster_temporal_conv,
                        "temporal 1D convs as a strided 2D conv"))

Levers marked ``opt_in`` run only when asked for by name (``--levers NAME``); ``torch.compile``
is one (``--compile`` asks for it), and its first step (the compilation) is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Step:
    """One denoising step of a built model: ``step()`` runs one forward on the prepared inputs
    under ``torch.no_grad()`` in ``precision`` ("fp32", or "bf16" autocast)."""
    model: object                  # the STUNet (or anything with its call signature)
    x: object                      # b c t h w noisy clip
    timesteps: object              # b
    text: object                   # stunet.text.TextEncoding, b rows
    precision: str = "fp32"
    stride: int = 1

    def __call__(self):
        import torch
        from stunet.precision import Precision
        with torch.no_grad(), Precision(self.precision, "benchmark").autocast("cpu"):
            return self.model(self.x, self.timesteps, self.text, self.stride)


@dataclass(frozen=True)
class Lever:
    name: str
    on: Callable[[Step], Step]                  # turn the lever on (returns the step, changed)
    description: str = ""
    off: Callable[[Step], Step] | None = None   # the explicit "without" state (default: as built)
    opt_in: bool = False                        # only when asked for by name


def channels_last_on(step: Step) -> Step:
    import torch
    step.model = step.model.to(memory_format=torch.channels_last)
    return step


def channels_last_off(step: Step) -> Step:
    import torch
    step.model = step.model.to(memory_format=torch.contiguous_format)
    return step


def torch_compile_on(step: Step) -> Step:
    import torch
    step.model = torch.compile(step.model)
    return step


def temporal_grid_on(step: Step) -> Step:
    return step                                 # the library's own path


def temporal_grid_off(step: Step) -> Step:
    from .legacy import temporal_on_columns
    step.model = temporal_on_columns(step.model)
    return step


LEVERS: list[Lever] = [
    Lever("temporal conv on grid", temporal_grid_on,
          "temporal 1D convs as (3,1) Conv2d on the channels-last grid b c t (h w), column group norm from "
          "sums in the same layout (the library's path); without: copies into (b h w) c t columns, GroupNorm "
          "and Conv1d there, and back (`benchmarks/legacy.py`)",
          off=temporal_grid_off),
    Lever("channels_last", channels_last_on,
          "4D weights in channels-last memory format (`model.to(memory_format=torch.channels_last)`; "
          "without: contiguous). The model already makes its spatial activations channels-last.",
          off=channels_last_off),
    Lever("torch.compile", torch_compile_on,
          "`torch.compile(model)` (inductor, default mode); its first step includes the compilation",
          opt_in=True),
]


def lever_names(levers: list[Lever] | None = None) -> list[str]:
    return [lv.name for lv in (LEVERS if levers is None else levers)]


def select(names: list[str] | tuple[str, ...] | None, compile: bool = False) -> list[str]:
    """The lever names to run: ``names`` (every one must exist), or every lever that is not
    opt-in; ``compile`` adds ``torch.compile``."""
    known = {lv.name: lv for lv in LEVERS}
    if names is None:
        chosen = [lv.name for lv in LEVERS if not lv.opt_in]
    else:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown lever(s) {unknown}; registered: {lever_names()}")
        chosen = list(dict.fromkeys(names))
    if compile and "torch.compile" not in chosen:
        chosen.append("torch.compile")
    return chosen


def get(name: str) -> Lever:
    for lv in LEVERS:
        if lv.name == name:
            return lv
    raise ValueError(f"unknown lever {name!r}; registered: {lever_names()}")
