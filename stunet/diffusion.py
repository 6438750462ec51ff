"""Forward diffusion and the training objective (discrete DDPM time, v-prediction).

The noise schedule comes from diffusers' schedulers (``make_scheduler``), so training
and sampling share one definition of alphas. With v-prediction (Salimans & Ho 2022),
the MSE on v weights the x0 error by (SNR + 1): a sound weighting that never vanishes
at high noise, where global motion is decided.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from .config import STUNetConfig

from .defaults import SAMPLER, SAMPLERS  # noqa: F401  (SAMPLERS re-exported)

# diffusers resolves its top-level names lazily, and that first resolution is not thread-safe: the
# studio's background warm-up and a Generate request importing at once gave "cannot import name
# 'DDIMScheduler' from 'diffusers'". Every import of diffusers' schedulers goes through this lock.
_IMPORT_LOCK = threading.Lock()


def schedulers():
    """diffusers' (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler), imported once, thread-safely."""
    with _IMPORT_LOCK:
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler  # heavy, deferred
    return DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler


def unipc_scheduler():
    with _IMPORT_LOCK:
        from diffusers import UniPCMultistepScheduler
    return UniPCMultistepScheduler


def shifted_betas(config: STUNetConfig) -> np.ndarray:
    """Betas of ``config.beta_schedule`` with log-SNR shifted by -2 log(noise_shift).

    alpha_bar' = sigmoid(logit(alpha_bar) - 2 log s) (Hoogeboom et al. 2023, eq. 5), turned back
    into betas so that diffusers' schedulers run it unchanged (``trained_betas``).
    """
    DDPMScheduler, _, _ = schedulers()
    ac = DDPMScheduler(num_train_timesteps=config.train_timesteps,
                       beta_schedule=config.beta_schedule).alphas_cumprod.double().numpy()
    logit = np.log(ac) - np.log1p(-ac) - 2.0 * np.log(config.noise_shift)
    ac_shifted = 1.0 / (1.0 + np.exp(-logit))
    prev = np.concatenate([[1.0], ac_shifted[:-1]])
    return np.clip(1.0 - ac_shifted / prev, 0.0, 0.999)


def make_scheduler(config: STUNetConfig, sampler: str = SAMPLER):
    """A fresh diffusers scheduler (they are stateful: one per sampling call)."""
    _, DDIMScheduler, DPMSolverMultistepScheduler = schedulers()
    common = dict(num_train_timesteps=config.train_timesteps, beta_schedule=config.beta_schedule,
                  prediction_type=config.prediction_type, timestep_spacing="trailing")
    if config.noise_shift != 1.0:
        common["trained_betas"] = shifted_betas(config)
    if sampler == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=True, **common)
    if sampler == "dpm++":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **common)
    if sampler == "dpm++3m":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=3, **common)
    if sampler == "unipc":
        return unipc_scheduler()(solver_order=2, predict_x0=True, solver_type="bh2", **common)
    raise ValueError(f"unknown sampler {sampler!r}; choose from {SAMPLERS}")


def alphas_cumprod(config: STUNetConfig) -> torch.Tensor:
    return make_scheduler(config, "ddim").alphas_cumprod.float()


def expand(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return a.reshape(-1, *([1] * (like.ndim - 1)))


def add_noise(ac: torch.Tensor, x0, noise, timesteps):
    """x_t: the clean clip ``x0`` noised to diffusion step(s) ``timesteps`` (one per sample)."""
    a = expand(ac[timesteps].sqrt(), x0)
    s = expand((1 - ac[timesteps]).sqrt(), x0)
    return a * x0 + s * noise


def target(config: STUNetConfig, ac, x0, noise, timesteps):
    """What the network learns to output at ``timesteps``: the noise (epsilon), the clean clip (sample) or v."""
    if config.prediction_type == "epsilon":
        return noise
    if config.prediction_type == "sample":
        return x0
    return expand(ac[timesteps].sqrt(), x0) * noise - expand((1 - ac[timesteps]).sqrt(), x0) * x0


def predict_x0(config: STUNetConfig, ac, x_t, model_out, timesteps):
    """x0-hat from the network output at diffusion step(s) ``timesteps``."""
    a = expand(ac[timesteps].sqrt(), x_t)
    s = expand((1 - ac[timesteps]).sqrt(), x_t)
    if config.prediction_type == "epsilon":
        return (x_t - s * model_out) / a.clamp_min(1e-4)
    if config.prediction_type == "sample":
        return model_out
    return a * x_t - s * model_out
