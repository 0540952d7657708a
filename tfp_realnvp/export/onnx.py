"""ONNX export of a trained ``RealNVP``: one ``.onnx`` file per served function, for ONNX Runtime.

The files are converted with ``tf2onnx`` from the same inference-mode functions as the
SavedModel signatures (:mod:`~tfp_realnvp.export.signatures`), so they compute the same
values, with the same seeded dequantization noise:

* ``log_prob.onnx``: ``images`` uint8 ``[N, H, W, C]`` -> ``log_prob`` float32 ``[N]``
  (nats) and ``bits_per_dim`` float32 ``[N]``;
* ``encode.onnx``: ``images`` uint8 -> ``z`` float32 ``[N, H, W, C]``;
* ``decode.onnx``: ``z`` float32 -> ``images`` uint8 ``[N, H, W, C]``;
* a class-conditional model takes ``labels`` int32 ``[N]`` in all three, and adds
  ``classify.onnx``: ``images`` uint8 -> ``probabilities``, ``class_log_prob`` float32
  ``[N, K]`` and ``labels`` int32 ``[N]``.

``sample`` is not exported: ONNX's random operators take no seed input, so a served
sample could not be reproduced from a seed as the SavedModel's can; ``decode`` of
``temperature * z`` with ``z`` drawn by the caller gives the same images.

Three pieces of the traced graphs do not convert as they are, and are rewritten:

* ``Log1p`` (the logit preprocessing) has no ``tf2onnx`` converter: it becomes
  ``x * Log(1 + x) / ((1 + x) - 1)``, which corrects the rounding of ``1 + x`` and keeps
  the precision of ``log1p`` for small ``x`` (pixels near 128).
* ``BroadcastArgs`` (the batch shape of the base distribution's ``log_prob``) has no
  converter either: it becomes the shape of the sum of two zero tensors of the two
  shapes.
* ONNX Runtime has no ``ReduceSum`` kernel for ``uint32`` (the hash of the
  dequantization noise): the sum is taken in ``int64`` and reduced modulo 2**32, which
  is what the ``uint32`` sum computes.

``manifest.json`` beside the files records the model, the inputs and outputs of each
file, the opset and the package versions.

Example::

    directory = tfp_realnvp.export.export_onnx(model, "export-onnx")
    session = onnxruntime.InferenceSession(str(directory / "log_prob.onnx"))
    log_prob, bits_per_dim = session.run(None, {"images": images})
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from tfp_realnvp.export.signatures import trace_signatures
from tfp_realnvp.export.versions import check_writable, install_export, resolve_target
from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.version import VERSION
from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED

#: The ONNX opset the files use (bitwise operators need 18).
DEFAULT_OPSET = 18

#: File stem of each converted signature (``serving_default`` serves ``log_prob``).
ONNX_FILES = {"serving_default": "log_prob", "encode": "encode", "decode": "decode"}

#: The extra file of a class-conditional model.
CONDITIONAL_ONNX_FILES = {**ONNX_FILES, "classify": "classify"}

#: Name of the file that describes an ONNX export.
MANIFEST_FILENAME = "manifest.json"

#: What to install for ONNX export, as the error messages say it.
INSTALL_HINT = "pip install 'tfp-realnvp[onnx]' (tf2onnx, onnx and onnxruntime)"


def require_converter() -> None:
    """Refuses ONNX export where it cannot run: another backend than TensorFlow, or no ``tf2onnx``.

    Raises:
        ValueError: on a backend other than TensorFlow, naming it.
        ImportError: when ``tf2onnx`` or ``onnx`` is not importable, saying what to install.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"ONNX export converts TensorFlow graphs and needs the TensorFlow Keras backend; the active backend is "
            f"{backend!r}. Install 'tfp-realnvp[tensorflow,onnx]' and run with KERAS_BACKEND=tensorflow."
        )
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise ImportError(f"ONNX export needs tf2onnx and onnx ({error}); {INSTALL_HINT}.") from error


# tf2onnx converters of the TensorFlow operators it lacks -------------------------------
# Old-style custom handlers, ``handler(graph, node, name, args)``: each turns ``node``
# into ONNX operators in place (the ``custom_op_handlers`` argument of tf2onnx.convert).


def _log1p_handler(graph, node, name, args):
    """``Log1p(x)`` as ``x * Log(w) / (w - 1)`` with ``w = 1 + x`` (``x`` where ``w == 1``).

    The quotient corrects the rounding of ``1 + x`` (D. Goldberg, "What every computer
    scientist should know about floating-point arithmetic", 1991), so small ``x`` keep
    their relative precision as with a true ``log1p``.
    """
    from tf2onnx import utils

    def make(op_type, inputs):
        return graph.make_node(op_type, inputs, name=utils.make_name(f"{name}_{op_type.lower()}")).output[0]

    x = node.input[0]
    dtype = utils.map_onnx_to_numpy_type(graph.get_dtype(x))
    one = graph.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype)).output[0]
    w = make("Add", [x, one])
    w_minus_one = make("Sub", [w, one])
    exact = make("Equal", [w_minus_one, make("Sub", [one, one])])
    # Where w == 1 the quotient is 0/0; divide by 1 there instead, and take x.
    safe = make("Where", [exact, one, w_minus_one])
    corrected = make("Div", [make("Mul", [x, make("Log", [w])]), safe])
    node.type = "Where"
    graph.replace_inputs(node, [exact, x, corrected])
    return node


def _broadcast_args_handler(graph, node, name, args):
    """``BroadcastArgs(s0, s1)`` as ``Shape(zeros(s0) + zeros(s1))``, cast to the output's type."""
    from onnx import TensorProto
    from tf2onnx import utils

    zeros = []
    for shape in node.input:
        shape = graph.make_node("Cast", [shape], attr={"to": TensorProto.INT64}, name=utils.make_name(f"{name}_shape"))
        zeros.append(graph.make_node("ConstantOfShape", [shape.output[0]], name=utils.make_name(f"{name}_zeros")))
    total = graph.make_node("Add", [z.output[0] for z in zeros], name=utils.make_name(f"{name}_sum"))
    broadcast = graph.make_node("Shape", [total.output[0]], name=utils.make_name(f"{name}_broadcast"))
    output_type = graph.get_dtype(node.output[0])
    node.type = "Cast"
    graph.replace_inputs(node, [broadcast.output[0]])
    node.set_attr("to", output_type)
    return node


_CUSTOM_HANDLERS = {"Log1p": (_log1p_handler, []), "BroadcastArgs": (_broadcast_args_handler, [])}


def _widen_uint32_sums(model_proto):
    """Rewrites every ``ReduceSum`` of a ``uint32`` tensor as an ``int64`` sum modulo 2**32.

    ONNX Runtime has no ``uint32`` ``ReduceSum`` kernel. Each input is at most
    2**32 - 1, so an ``int64`` sum of fewer than 2**31 of them is exact, and its low 32
    bits are the wrapped ``uint32`` sum.
    """
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(model_proto)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    types.update({t.name: t.data_type for t in model_proto.graph.initializer})
    mask = helper.make_tensor("uint32_mask_int64", TensorProto.INT64, [], [2**32 - 1])
    nodes, widened = [], 0
    for node in model_proto.graph.node:
        if node.op_type != "ReduceSum" or types.get(node.input[0]) != TensorProto.UINT32:
            nodes.append(node)
            continue
        widened += 1
        tag = f"{node.name}_int64"
        wide = helper.make_node("Cast", [node.input[0]], [f"{tag}_in"], to=TensorProto.INT64, name=f"{tag}_in")
        total = onnx.NodeProto()
        total.CopyFrom(node)
        total.input[0] = wide.output[0]
        (output,) = node.output
        total.output[0] = f"{tag}_sum"
        low = helper.make_node("BitwiseAnd", [total.output[0], mask.name], [f"{tag}_low"], name=f"{tag}_low")
        back = helper.make_node("Cast", [low.output[0]], [output], to=TensorProto.UINT32, name=f"{tag}_out")
        nodes.extend([wide, total, low, back])
    if widened:
        del model_proto.graph.node[:]
        model_proto.graph.node.extend(nodes)
        model_proto.graph.initializer.append(mask)
    return model_proto


def _captured_constants(concrete) -> dict:
    """The values of the non-variable tensors ``concrete`` captures, by the name of their placeholder.

    ``tf2onnx`` makes every captured tensor that is not a variable an input of the ONNX
    graph (the base distribution's float32 ``loc`` and ``scale``); they are constants.
    """
    import tensorflow as tf

    captures = list(concrete.captured_inputs)
    placeholders = concrete.inputs[len(concrete.inputs) - len(captures) :]
    return {p.name: v.numpy() for p, v in zip(placeholders, captures) if v.dtype != tf.resource}


def _used_names(graph) -> set[str]:
    """Every tensor name a node of ``graph`` (or of a subgraph of one) reads."""
    used = set()
    for node in graph.node:
        used.update(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                used |= _used_names(subgraph)
    return used


def _inline_constants(model_proto, constants: dict):
    """Turns the graph inputs named in ``constants`` into initializers holding their values
    (and drops those that no node reads)."""
    from onnx import numpy_helper

    graph = model_proto.graph
    used = _used_names(graph)
    found = [value.name for value in graph.input if value.name in constants]
    inputs = [value for value in graph.input if value.name not in constants]
    del graph.input[:]
    graph.input.extend(inputs)
    graph.initializer.extend(numpy_helper.from_array(np.asarray(constants[n]), name=n) for n in found if n in used)
    return model_proto


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """tf2onnx logs every step at INFO and WARNING level; keep only its errors."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def convert_function(concrete, *, opset: int = DEFAULT_OPSET):
    """The ONNX ``ModelProto`` of one traced signature (a ``ConcreteFunction``), checked by ``onnx``.

    Its inputs and outputs keep the signature's names (``images``, ``labels``, ``z``;
    ``log_prob``, ``bits_per_dim``, ``z``, ``images``, ...).
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    specs = list(concrete.structured_input_signature[0])
    function = tf.function(concrete, input_signature=specs, autograph=False)
    with _quiet_converter():
        model_proto, _ = tf2onnx.convert.from_function(
            function, input_signature=specs, opset=opset, custom_op_handlers=dict(_CUSTOM_HANDLERS)
        )
    # The function tf2onnx converted (tf.function keeps its trace).
    constants = _captured_constants(function.get_concrete_function(*specs))
    model_proto = _widen_uint32_sums(_inline_constants(model_proto, constants))
    onnx.checker.check_model(model_proto)
    return model_proto


def _value_text(value) -> str:
    """``"uint8 [None, 8, 8, 1]"`` for an ONNX graph input or output."""
    import onnx

    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return f"{onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name} {dims}".replace("'", "")


def _manifest(model: Any, protos: dict, opset: int) -> dict:
    import onnx
    import tensorflow as tf
    import tf2onnx

    return {
        "format": "tfp_realnvp.RealNVP ONNX",
        "image_shape": [int(d) for d in model.image_shape],
        "num_classes": model.num_classes,
        "flow_config": model.flow.config,
        "eval_noise_seed": list(EVAL_NOISE_SEED),
        "opset": int(opset),
        "files": {
            f"{stem}.onnx": {
                "inputs": {v.name: _value_text(v) for v in proto.graph.input},
                "outputs": {v.name: _value_text(v) for v in proto.graph.output},
            }
            for stem, proto in protos.items()
        },
        "tfp_realnvp_version": VERSION,
        "tensorflow_version": tf.__version__,
        "tf2onnx_version": tf2onnx.__version__,
        "onnx_version": onnx.__version__,
    }


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    version: int | str | None = None,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
) -> pathlib.Path:
    """Writes ``model``'s ``log_prob``, ``encode`` and ``decode`` as ONNX files (see the module docstring).

    The directory is assembled aside and moved into place when complete, under the
    same rules as :func:`~tfp_realnvp.export.export_saved_model` (version
    directories, ``overwrite``).

    Args:
        model: a ``tfp_realnvp.RealNVP`` (TensorFlow backend).
        path: the export directory, or with ``version`` the base directory of versions.
        version: ``None``, an integer or ``"auto"``, as for ``export_saved_model``.
        overwrite: replace an existing non-empty directory.
        opset: the ONNX opset, at least 18.

    Returns:
        The directory written.

    Raises:
        ValueError: on a backend other than TensorFlow, for an ``opset`` below 18, a bad
            ``version`` or a model with NaN or infinite weights.
        ImportError: when ``tf2onnx`` or ``onnx`` is missing, saying what to install.
        ExportExistsError: when the directory holds files and ``overwrite`` is false.
        TypeError: when ``model`` is not a ``RealNVP``.
    """
    require_converter()
    from tfp_realnvp.model.files import check_finite_weights
    from tfp_realnvp.model.realnvp import RealNVP

    if not isinstance(model, RealNVP):
        raise TypeError(f"export_onnx needs a tfp_realnvp.RealNVP model; received {type(model).__name__}.")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < DEFAULT_OPSET:
        raise ValueError(f"opset must be an integer >= {DEFAULT_OPSET} (bitwise operators); received {opset!r}.")
    target = resolve_target(path, version)
    check_writable(target, overwrite)
    check_finite_weights(model, name="the model to export")

    concrete = trace_signatures(model)
    files = CONDITIONAL_ONNX_FILES if model.num_classes is not None else ONNX_FILES
    protos = {stem: convert_function(concrete[name], opset=opset) for name, stem in files.items()}
    staging = atomic.staging_directory(target)
    try:
        staging.mkdir(parents=True)
        for stem, proto in protos.items():
            (staging / f"{stem}.onnx").write_bytes(proto.SerializeToString())
        manifest = json.dumps(_manifest(model, protos, opset), indent=2, allow_nan=False)
        (staging / MANIFEST_FILENAME).write_text(manifest + "\n")
        return install_export(staging, path, version, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
