"""Calibration of label-word scores (numpy only, so the command line can name the modes without torch)."""

from __future__ import annotations

import numpy as np

from softprompt.errors import ConfigError

CALIBRATIONS = ("batch", "content-free", "none")


def calibrate(logits: np.ndarray, content_free_logits: np.ndarray) -> np.ndarray:
    """Contextual calibration in log space: log p(word | x) - log p(word | content-free input)."""
    return logits - content_free_logits.reshape(1, -1)


def batch_calibrate(logits: np.ndarray) -> np.ndarray:
    """Batch Calibration: each label's score minus its mean over the evaluated inputs."""
    return logits - logits.mean(0, keepdims=True)


def calibration_mode(calibrated: bool | str) -> str:
    """True -> "content-free" (the older boolean API), False -> "none"; else one of CALIBRATIONS."""
    mode = {True: "content-free", False: "none"}[calibrated] if isinstance(calibrated, bool) else calibrated
    if mode not in CALIBRATIONS:
        raise ConfigError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibrated!r}")
    return mode
