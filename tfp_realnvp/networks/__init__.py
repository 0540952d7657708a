"""Keras layers that condition the coupling bijectors."""

from tfp_realnvp.networks.batch_norm import ConditionerBatchNorm
from tfp_realnvp.networks.context import ContextEmbedding
from tfp_realnvp.networks.resnet import ResNetConditioner
from tfp_realnvp.networks.weight_norm import WeightNormConv2D

__all__ = ["ConditionerBatchNorm", "ContextEmbedding", "ResNetConditioner", "WeightNormConv2D"]
