"""The package's version, in one place (``tfp_realnvp.__version__``, export metadata)."""

VERSION = "0.1.0"
