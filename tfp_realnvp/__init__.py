"""tfp_realnvp: Real NVP normalizing flows as TensorFlow Probability bijectors.

``forward`` maps a latent ``z`` to an image ``x`` (generation); ``inverse`` maps ``x``
to ``z`` (density). See ``MultiScaleFlow`` for the architecture and ``RealNVP`` for
training with Keras.
"""

__version__ = "0.1.0"

from tfp_realnvp.backend import tfb, tfd, tfp
from tfp_realnvp.bijectors import (
    AffineCoupling,
    BatchNormalization,
    FactorOut,
    LogitPreprocess,
    MultiScaleFlow,
    Squeeze,
)
from tfp_realnvp.bijectors.recompute import RECOMPUTE_MODES
from tfp_realnvp.conditional_base import ConditionalNormal
from tfp_realnvp.export import ExportExistsError, export_saved_model, load_metadata
from tfp_realnvp.export_description import describe_export
from tfp_realnvp.model import RealNVP
from tfp_realnvp.networks import ContextEmbedding, ResNetConditioner, WeightNormConv2D

__all__ = [
    "AffineCoupling",
    "BatchNormalization",
    "ConditionalNormal",
    "ContextEmbedding",
    "ExportExistsError",
    "FactorOut",
    "LogitPreprocess",
    "MultiScaleFlow",
    "RECOMPUTE_MODES",
    "RealNVP",
    "ResNetConditioner",
    "Squeeze",
    "WeightNormConv2D",
    "describe_export",
    "export_saved_model",
    "load_metadata",
    "tfb",
    "tfd",
    "tfp",
]
