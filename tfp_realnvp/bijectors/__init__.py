"""Real NVP bijectors (TFP ``Bijector`` subclasses): ``forward`` generates, ``inverse`` infers."""

from tfp_realnvp.bijectors.batch_norm import BatchNormalization, FlowBatchNormState
from tfp_realnvp.bijectors.coupling import AffineCoupling
from tfp_realnvp.bijectors.factor_out import FactorOut
from tfp_realnvp.bijectors.masks import checkerboard
from tfp_realnvp.bijectors.multiscale import MultiScaleFlow
from tfp_realnvp.bijectors.one_pass import OnePassBijector
from tfp_realnvp.bijectors.preprocess import LogitPreprocess
from tfp_realnvp.bijectors.squeeze import Squeeze

__all__ = [
    "AffineCoupling",
    "BatchNormalization",
    "FactorOut",
    "FlowBatchNormState",
    "LogitPreprocess",
    "MultiScaleFlow",
    "OnePassBijector",
    "Squeeze",
    "checkerboard",
]
