from helpers import fast_jax_compilation  # noqa: F401  (autouse: quicker XLA compiles on JAX)
