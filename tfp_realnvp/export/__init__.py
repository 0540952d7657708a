"""SavedModel export: the serving signatures, version directories, metadata and listing.

Modules: ``saved_model`` (``export_saved_model``, ``load_metadata``) and ``describe``
(the signature listing of an export).
"""
