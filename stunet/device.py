"""Where the network runs: ``resolve_device()`` reads ``$STUNET_DEVICE`` (``auto``, ``cpu`` or ``cuda``).

    resolve_device()          # cuda where torch sees a GPU, else cpu ($STUNET_DEVICE unset or "auto")
    resolve_device("cuda")    # DeviceError where torch has no CUDA (a CPU build, or no GPU / driver)

The studio loads its models on this device (``demo.models``); the library's own default stays
the CPU (``Pipeline.from_pretrained(device=None)``), so scripts and tests do what they always did.
On a ZeroGPU Space ``torch.cuda.is_available()`` is True in the main process too (the ``spaces``
package emulates CUDA there and gives a real GPU inside ``@spaces.GPU`` functions), so ``auto``
puts the models on ``cuda`` at start-up, as its documentation asks.
"""
from __future__ import annotations

import os

import torch

DEVICE_ENV = "STUNET_DEVICE"
DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """The device asked for is not one stunet knows, or not one this machine has."""


def resolve_device(name: str | None = None) -> torch.device:
    """``name`` ("auto", "cpu", "cuda"; None: ``$STUNET_DEVICE``, else "auto") as a ``torch.device``."""
    if name is None:
        name = os.environ.get(DEVICE_ENV, "")
    key = str(name).strip().lower() or "auto"
    if key not in DEVICES:
        raise DeviceError(f"{DEVICE_ENV} must be one of {', '.join(DEVICES)}, got {str(name)[:40]!r}")
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cuda" and not torch.cuda.is_available():
        why = ("this torch is a CPU build" if torch.version.cuda is None
               else "torch finds no CUDA device (no GPU, or no driver)")
        raise DeviceError(f"{DEVICE_ENV}=cuda, but {why}; use {DEVICE_ENV}=cpu or leave it unset")
    return torch.device(key)
