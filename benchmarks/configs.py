"""The model sizes, precisions and implementations that the train-step benchmarks share
(``throughput.py``, ``step_profile.py``, ``memory.py``), and the model of each.

Importing this module imports the standard library only; ``build_model`` imports Keras
and the package when it is called.
"""

from __future__ import annotations

#: Model settings per ``--config``. ``celeba`` follows the Real NVP paper (section 4.1):
#: 64x64 images, the multi-scale recursion repeated until the last scale works on
#: 4x4 (five scales), 32 feature maps at the first scale and 2 residual blocks.
CONFIGS = {
    "cifar10": {"image_shape": (32, 32, 3), "num_scales": 2, "num_filters": 64, "num_blocks": 8},
    "celeba": {"image_shape": (64, 64, 3), "num_scales": 5, "num_filters": 32, "num_blocks": 2},
    "tiny": {"image_shape": (8, 8, 1), "num_scales": 2, "num_filters": 8, "num_blocks": 1},
}
#: Keras dtype policies the benchmarks take (``--precision``).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
#: The package's ``RealNVP`` and the plain-Keras baseline, in report order.
IMPLEMENTATIONS = ("package", "baseline")


def config_record(config: str) -> dict:
    """``CONFIGS[config]`` as JSON holds it (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIGS[config].items()}


def build_model(impl: str, config: str, precision: str, seed: int):
    """The package's ``RealNVP`` (``impl="package"``) or the plain-Keras baseline, not compiled.

    Args:
        impl: one of ``IMPLEMENTATIONS``.
        config: one of ``CONFIGS``.
        precision: the Keras dtype policy, one of ``PRECISIONS``.
        seed: the model's seed.
    """
    kwargs = dict(CONFIGS[config], dtype=precision, seed=seed)
    if impl == "package":
        import tfp_realnvp

        # The architecture of the plain baseline and the PyTorch port: weight-norm
        # conditioners without batch norm (the package's default adds it).
        return tfp_realnvp.RealNVP(conditioner_batch_norm=False, **kwargs)
    from benchmarks.plain_keras import PlainRealNVP

    return PlainRealNVP(**kwargs)
