"""stunet: Lumiere's Space-Time U-Net, trained on a procedural shapes world, with inspection."""
from .config import PRESETS, STUNetConfig, preset
from .model import STUNet, describe_pyramid, inflate
from .text import Tokenizer

__all__ = ["STUNetConfig", "PRESETS", "preset", "STUNet", "inflate", "describe_pyramid", "Tokenizer"]
__version__ = "0.1.0"


def __getattr__(name):
    # ``stunet.load_pipeline``: a Pipeline or a CascadePipeline by the checkpoint's config (imported on first use)
    if name == "load_pipeline":
        from .cascade import load_pipeline
        return load_pipeline
    raise AttributeError(f"module 'stunet' has no attribute {name!r}")
