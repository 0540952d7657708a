"""The ``RealNVP`` Keras model and what it is made of besides the flow.

Modules: ``realnvp`` (the model: likelihood, ``fit``, sampling, encode/decode),
``dequantization`` (evaluation and training noise), ``conditional_base`` (the
class-conditional Gaussian base), ``labels`` (label checks and the model's inputs),
``batch_norm_refresh`` (re-estimated batch-norm averages after each epoch),
``baselines`` (the independent-pixel reference) and ``files`` (``.keras`` files).
"""
