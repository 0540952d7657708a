"""SavedModel and ONNX export: the serving signatures, version directories, metadata and listing.

Modules:

* ``saved_model``: :func:`export_saved_model`, which puts the pieces below together.
* ``signatures``: the serving signatures, traced in inference mode (``serving_default``,
  ``sample``, ``encode``, ``decode``, and ``classify`` for a class-conditional model),
  with their in-graph input checks and the ``max_samples`` bound.
* ``versions``: where an export goes (version directories, ``version="auto"``), the
  overwrite rules, :class:`ExportExistsError` and moving a finished export into place.
* ``metadata``: ``assets/realnvp.json``, written at export and read by :func:`load_metadata`.
* ``measurement``: the bits/dim an export records, checked and measured.
* ``describe``: :func:`describe_export`, the signature listing of an export.
* ``onnx``: :func:`export_onnx`, the ``log_prob``, ``encode`` and ``decode`` signatures
  (and ``classify``) as ONNX files for ONNX Runtime, converted with ``tf2onnx``.
"""

from tfp_realnvp.export.describe import describe_export
from tfp_realnvp.export.metadata import load_metadata
from tfp_realnvp.export.onnx import export_onnx
from tfp_realnvp.export.saved_model import export_saved_model
from tfp_realnvp.export.versions import ExportExistsError

__all__ = ["ExportExistsError", "describe_export", "export_onnx", "export_saved_model", "load_metadata"]
