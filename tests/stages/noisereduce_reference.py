"""The reference the denoise stage's own gate is held to: noisereduce's stationary gate.

``noisereduce_gate`` calls ``noisereduce.reduce_noise(stationary=True)`` with the stage's
option names, as tests/stages/test_denoise_gate.py and bench/denoise_speed.py compare
``stages.denoise.spectral_gate`` against it. noisereduce is a test dependency only.
"""

from __future__ import annotations

import numpy as np


def noisereduce_gate(samples, rate, noise, *, n_fft, prop_decrease=1.0, threshold_std=1.0,
                     freq_smooth_hz=250.0, time_smooth_ms=32.0) -> np.ndarray:
    """noisereduce's stationary gate of ``samples`` against the ``noise`` clip, in its default
    600 000-sample pieces (one process: ``n_jobs=1``)."""
    import noisereduce

    return noisereduce.reduce_noise(
        y=np.asarray(samples, dtype=np.float32),
        sr=rate,
        y_noise=noise,
        stationary=True,
        prop_decrease=prop_decrease,
        n_std_thresh_stationary=threshold_std,
        n_fft=n_fft,
        freq_mask_smooth_hz=freq_smooth_hz,
        time_mask_smooth_ms=time_smooth_ms,
        n_jobs=1,
    )
