"""What an export holds: the listing ``saved_model_cli show --all`` prints, with a fallback.

``describe_export`` runs TensorFlow's ``saved_model_cli`` when it is installed and
otherwise reads the same ``SignatureDef`` listing from ``saved_model.pb`` itself, so the
command line can always show the served signatures after exporting.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys


def _saved_model_cli() -> str | None:
    local = pathlib.Path(sys.executable).parent / "saved_model_cli"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("saved_model_cli")


def _describe_without_cli(path: pathlib.Path) -> str:
    """The ``SignatureDef`` part of ``saved_model_cli show --all``, read from ``saved_model.pb``."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())

    def tensor_lines(kind: str, key: str, info) -> list[str]:
        if info.tensor_shape.unknown_rank:
            shape = "unknown_rank"
        else:
            shape = "(" + ", ".join(str(d.size) for d in info.tensor_shape.dim) + ")"
        return [
            f"    {kind}['{key}'] tensor_info:",
            f"        dtype: {types_pb2.DataType.Name(info.dtype)}",
            f"        shape: {shape}",
            f"        name: {info.name}",
        ]

    lines = []
    for meta_graph in sorted(saved_model.meta_graphs, key=lambda m: list(m.meta_info_def.tags)):
        tags = ", ".join(meta_graph.meta_info_def.tags)
        lines += ["", f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:"]
        for key in sorted(meta_graph.signature_def):
            signature = meta_graph.signature_def[key]
            lines += ["", f"signature_def['{key}']:"]
            lines.append("  The given SavedModel SignatureDef contains the following input(s):")
            for name in sorted(signature.inputs):
                lines += tensor_lines("inputs", name, signature.inputs[name])
            lines.append("  The given SavedModel SignatureDef contains the following output(s):")
            for name in sorted(signature.outputs):
                lines += tensor_lines("outputs", name, signature.outputs[name])
            lines.append(f"  Method name is: {signature.method_name}")
    return "\n".join(lines) + "\n"


def describe_export(path: str | os.PathLike, *, use_cli: bool = True) -> str:
    """The signatures of an export, as ``saved_model_cli show --all --dir path`` lists them.

    Args:
        path: the export directory.
        use_cli: run ``saved_model_cli`` (from the Python environment's ``bin``
            directory, else ``PATH``). Without it, or when the tool is missing or
            fails, the same ``SignatureDef`` listing (without the op list and
            the concrete functions) is read from ``saved_model.pb`` directly.

    Returns:
        The listing text.

    Raises:
        FileNotFoundError: naming ``path`` when it holds no ``saved_model.pb``.
    """
    directory = pathlib.Path(os.fspath(path))
    if not (directory / "saved_model.pb").is_file():
        raise FileNotFoundError(f"no SavedModel at {str(directory)!r} (saved_model.pb not found).")
    cli = _saved_model_cli() if use_cli else None
    if cli is not None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        result = subprocess.run(
            [cli, "show", "--all", "--dir", str(directory)], capture_output=True, text=True, env=env, check=False
        )
        if result.returncode == 0 and "signature_def[" in result.stdout:
            return result.stdout
    return _describe_without_cli(directory)
