"""The cascade baseline of issue 18: keyframes, then temporal super-resolution (TSR).

Lumiere's central claim (Bar-Tal et al. 2024, arXiv 2401.12945, sections 1 and 3) is that a
Space-Time U-Net, which makes the whole clip at once and down-samples time, beats the usual
cascade: a base model makes distant keyframes and TSR models fill the frames between them
(Imagen Video, Ho et al. 2022, arXiv 2210.02303: TSR conditioned on the input frames by channel
concatenation, with noise augmentation of that conditioning; Make-A-Video, Singer et al. 2022,
arXiv 2209.14792: masked frame interpolation through the given frames plus mask channels). This
package is that cascade, built to be compared at equal parameters, equal training compute and
from the same image-stage weights.

Design: **one network, two roles.** The keyframe model K and the TSR model T are one STUNet-family
network (``config.net_preset``: the ``shapes`` STUNet without temporal down/up-sampling, so its
temporal conv and attention run at keyframe rate in K). A separate K and T, each with the full image
U-Net (1.30 M parameters), would be 3.37 M parameters against the STUNet's 1.76 M; the shared network
is 1.69 M (4.4 % fewer, tested), and both roles start from the very same image-stage weights (inflated as ``stunet
train`` inflates: temporal layers start as identity). The roles differ only by their input:

* K: 8 keyframes at world stride 4 (stride conditioning 4) spanning the 32 base frames; nothing
  given (text-to-video) or keyframe 0 given (image-to-video);
* T: a 5-frame window at stride 1 whose first and last frames are two consecutive keyframes, given
  through the <noisy, conditioning, mask> input (noised: conditioning augmentation), filling the 3
  frames between them; and the extrapolation window, frames 28-31, with only its first frame given.

The checkpoint format also takes separate K and T weights (a general cascade); the experiment uses
shared weights.

* ``config``: ``CascadeConfig``, presets, ``net_preset``;
* ``checkpoint``: ``save_cascade`` / ``load_cascade`` (``DIR/config.json`` + ``DIR/net/``), ``is_cascade``;
* ``pipeline``: ``CascadePipeline`` and ``load_pipeline`` (a ``Pipeline`` or a ``CascadePipeline`` by
  ``config.json``);
* ``train``: ``stunet train-cascade`` (FLOPs per clip matched to ``stunet train``'s);
* ``testing``: ``save_tiny_cascade`` for other code's tests.
"""
from .checkpoint import is_cascade, load_cascade, read_cascade_config, save_cascade
from .config import CascadeConfig, net_preset, preset
from .pipeline import CascadePipeline, load_pipeline

__all__ = ["CascadeConfig", "preset", "net_preset", "CascadePipeline", "load_pipeline", "save_cascade",
           "load_cascade", "read_cascade_config", "is_cascade"]
