"""``RealNVP.export``: Keras 3's ``model.export`` with the model's input signature filled in.

Keras infers an export's input signature from the shapes a model was first called with,
and a ``RealNVP`` is built from its ``image_shape`` without ever being called, so
Keras' own ``export`` refuses it ("The model provided has never called"). The model
knows its inputs: uint8 images ``[None, H, W, C]`` (and int32 labels ``[None]`` for a
class-conditional model).
"""

from __future__ import annotations

import keras

from tfp_realnvp.internal.backend import backend_name

#: What a JAX user is told to do instead of ``RealNVP.export``.
TENSORFLOW_BACKEND_HINT = (
    "install TensorFlow with the package's extra (pip install 'tfp-realnvp[tensorflow]') and run with "
    "KERAS_BACKEND=tensorflow"
)


class KerasExportMixin:
    """``RealNVP.export`` and the input signature it uses.

    The model provides ``image_shape`` and ``num_classes``.
    """

    def export_input_signature(self) -> list:
        """The model's inputs as ``keras.InputSpec``: one images spec, or one ``(images, labels)`` pair.

        Returns:
            A list with one entry per positional argument of ``call``, as Keras'
            ``export`` takes it.
        """
        images = keras.InputSpec(shape=(None, *self.image_shape), dtype="uint8", name="images")
        if self.num_classes is None:
            return [images]
        labels = keras.InputSpec(shape=(None,), dtype="int32", name="labels")
        return [(images, labels)]

    def export(self, filepath, format: str = "tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Keras 3's ``model.export``: the model's ``call`` as an inference artifact.

        With the default ``format="tf_saved_model"`` the directory holds one endpoint,
        ``serve`` (also its ``serving_default`` signature): uint8 ``images``
        ``[N, H, W, C]`` (a class-conditional model: ``(images, labels)``, int32
        labels ``[N]``) -> ``log p(x)`` float32 ``[N]`` in nats, in inference mode and
        with the seeded dequantization noise of :meth:`log_prob`, so the served values
        equal ``model.log_prob(images)``::

            model.export("served")
            tf.saved_model.load("served").serve(tf.constant(images, tf.uint8))

        That is the Keras-standard artifact, for tools that expect what
        ``keras.Model.export`` writes. ``tfp_realnvp.export_saved_model`` writes the
        full serving set instead: ``serving_default`` with both ``log_prob`` and
        ``bits_per_dim``, ``sample``, ``encode``, ``decode``, ``log_prob_bound`` (the
        ``K``-sample bound) and ``classify`` for a class-conditional model, in-graph request checks, version directories and
        ``assets/realnvp.json`` metadata. Both need the TensorFlow backend.

        Args:
            filepath: where to write the artifact.
            format: a format of ``keras.Model.export`` (``"tf_saved_model"``,
                ``"litert"``, ...), with that format's own requirements. Not
                ``"onnx"``: Keras would convert the graph with ``tf2onnx`` as it is,
                and three of its operators do not convert (``Log1p``,
                ``BroadcastArgs``, and ``BitwiseXor`` below opset 18); ONNX files of
                ``log_prob``, ``encode`` and ``decode`` come from
                ``tfp_realnvp.export.export_onnx`` (or ``python -m tfp_realnvp
                export --format onnx``), which rewrites them.
            verbose: as in ``keras.Model.export``.
            input_signature: default :meth:`export_input_signature`.
            **kwargs: forwarded to ``keras.Model.export``.

        Raises:
            ValueError: for ``format="onnx"``, naming what to use instead; on the JAX
                backend (Keras would convert the JAX function with ``jax2tf``, which
                cannot trace the flow with a batch dimension of unknown size), saying
                what to install and which backend to use.
        """
        if backend_name() != "tensorflow":
            raise ValueError(
                f"RealNVP.export(format={format!r}) needs the TensorFlow Keras backend; the active backend is "
                f"{backend_name()!r}. To export, {TENSORFLOW_BACKEND_HINT}: load the saved .keras model there "
                "and call model.export, or tfp_realnvp.export_saved_model "
                "for the full set of serving signatures."
            )
        if format == "onnx":
            raise ValueError(
                "RealNVP.export(format='onnx') would write a graph ONNX Runtime cannot load (tf2onnx has no "
                "converter for its Log1p and BroadcastArgs operators, and its BitwiseXor needs opset 18); use "
                "tfp_realnvp.export.export_onnx(model, path) or `python -m tfp_realnvp export --format onnx`, "
                "which rewrite them."
            )
        if input_signature is None:
            input_signature = self.export_input_signature()
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
