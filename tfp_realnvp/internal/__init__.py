"""Plumbing that every layer of the package shares; nothing here is public API.

Modules: ``backend`` (the TFP substrate of the active Keras backend, and every use of a
TFP or Keras internal), ``compiled`` (compiled inference functions), ``stateless``
(pure-function calls over Keras variables), ``gradients`` (hand-written backward
passes), ``moving_stats`` (batch moments and moving averages), ``replicas`` (the
replicas of a TensorFlow strategy), ``job_environment`` (Keras' multi-process
variables), ``arguments`` (argument checks with one message form), ``validation``
(image checks), ``atomic`` (write-aside-and-rename files) and ``visualize`` (image grids).
"""
