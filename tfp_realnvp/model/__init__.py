"""The ``RealNVP`` Keras model and what it is made of besides the flow.

Modules: ``realnvp`` (the model: its state, Keras plumbing and likelihood), the method
groups it is assembled from (``fitting``: compile, loss, ``fit``/``evaluate`` and batch
statistics; ``inference``: ``log_prob``, ``bits_per_dim``, ``encode``, ``decode``;
``sampling``: ``sample`` and ``interpolate``; ``conditional``: labels, contexts and
``classify``), ``inputs`` (what a ``fit``/``evaluate`` input is), ``dequantization``
(evaluation and training noise), ``conditional_base`` (the class-conditional Gaussian
base), ``labels`` (label checks and the model's inputs), ``batch_norm_refresh``
(re-estimated batch-norm averages after each epoch), ``baselines`` (the
independent-pixel reference) and ``files`` (``.keras`` files).
"""
