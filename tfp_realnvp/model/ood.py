"""``RealNVP``'s out-of-distribution scores (filled in by the OOD work)."""

from __future__ import annotations


class OutOfDistributionMixin:
    """``RealNVP`` methods that score how far images lie from the training distribution."""
