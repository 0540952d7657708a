"""tfp_realnvp: Real NVP normalizing flows as TensorFlow Probability bijectors.

``forward`` maps a latent ``z`` to an image ``x`` (generation); ``inverse`` maps ``x``
to ``z`` (density). See ``MultiScaleFlow`` for the architecture and ``RealNVP`` for
training with Keras. ``tfp_realnvp.data`` holds the image sources and pipelines.
"""

from tfp_realnvp import data
from tfp_realnvp.bijectors import (
    AffineCoupling,
    BatchNormalization,
    FactorOut,
    LogitPreprocess,
    MultiScaleFlow,
    Squeeze,
)
from tfp_realnvp.bijectors.recompute import RECOMPUTE_MODES
from tfp_realnvp.export import ExportExistsError, describe_export, export_saved_model, load_metadata
from tfp_realnvp.internal.backend import tfb, tfd, tfp
from tfp_realnvp.internal.version import VERSION as __version__  # noqa: F401 (the package version, defined once)
from tfp_realnvp.model.adam import Adam
from tfp_realnvp.model.conditional_base import ConditionalNormal
from tfp_realnvp.model.ood import OOD_METHODS
from tfp_realnvp.model.realnvp import DEQUANTIZATIONS, RealNVP
from tfp_realnvp.model.variational import VariationalDequantizer
from tfp_realnvp.networks import ContextEmbedding, ResNetConditioner, WeightNormConv2D
from tfp_realnvp.training import train

__all__ = [
    "Adam",
    "AffineCoupling",
    "BatchNormalization",
    "ConditionalNormal",
    "ContextEmbedding",
    "DEQUANTIZATIONS",
    "ExportExistsError",
    "FactorOut",
    "LogitPreprocess",
    "MultiScaleFlow",
    "OOD_METHODS",
    "RECOMPUTE_MODES",
    "RealNVP",
    "ResNetConditioner",
    "Squeeze",
    "VariationalDequantizer",
    "WeightNormConv2D",
    "data",
    "describe_export",
    "export_saved_model",
    "load_metadata",
    "tfb",
    "tfd",
    "tfp",
    "train",
]
