"""Attributes the operations of a compiled XLA program, and their profiled time, to parts of a flow.

Two inputs, both plain text, so nothing beyond the standard library is needed:

* the optimized HLO module of a compiled JAX function (``jax.jit(f).lower(...).compile()
  .as_text()``). Every instruction carries ``metadata={op_name=... stack_frame_id=N}``,
  and the module ends with tables (``FileNames``, ``FunctionNames``, ``FileLocations``,
  ``StackFrames``) that resolve a frame id to the Python call stack that created it;
* a profiler trace in the Chrome trace-event JSON that ``jax.profiler.trace(...,
  create_perfetto_trace=True)`` writes. Each XLA operation that ran (a GPU kernel, or a
  CPU thunk) is an event with ``args.hlo_module`` and ``args.hlo_op``.

An operation's *part* comes from its opcode (convolutions and matrix products, and the
library calls that implement them on a GPU, are ``conv``; operations that only change
precision are ``cast``; those that only copy or transpose are ``layout``) and otherwise
from the innermost frame of its call stack that belongs to a known function
(``RULES``), e.g. ``BatchNormalization._transform`` -> ``batch_norm``. A fusion takes
the part most of its fused instructions have. The backward pass keeps the call stack
of the forward operation it differentiates, and its ``op_name`` contains
``transpose(jvp(``; that gives the *pass* (forward, backward, update).

The HLO text is read by ``hlo_text.py``; this module attributes and sums.
"""

from __future__ import annotations

import collections
import gzip
import json
from pathlib import Path

from benchmarks.hlo_text import HloModule, Instruction, call_stack

#: Parts, in report order.
PARTS = ("conv", "network", "coupling", "batch_norm", "reshape", "layout", "cast", "loss", "optimizer", "other")
PART_DESCRIPTIONS = {
    "conv": "convolutions of the conditioner networks (forward and backward)",
    "network": "rest of the conditioners: weight norm, ReLU, residual adds, biases",
    "coupling": "coupling arithmetic: masks, tanh scale, exp, affine update, log-det",
    "batch_norm": "batch statistics, normalisation, log-det, moving averages",
    "reshape": "squeeze and factor-out work fused with arithmetic (slicing, concatenation)",
    "layout": "operations that only move data: copies, transposes (squeeze's and the compiler's)",
    "cast": "operations that only change precision (with copies or transposes at most)",
    "loss": "dequantisation, logit preprocessing, prior, bits/dim, L2 penalty, metric",
    "optimizer": "gradient clipping and the Adam update",
    "other": "not attributed to a part",
}
PASSES = ("forward", "backward", "update", "unlabelled")

#: (function qualname prefix, file name suffix or None, part); the innermost frame that
#: matches a rule decides. Package classes and the plain-Keras baseline's are both here.
RULES = (
    # Optimizer (Keras) and gradient clipping.
    ("BaseOptimizer.", None, "optimizer"),
    ("JaxOptimizer.", None, "optimizer"),
    ("Adam.", None, "optimizer"),
    ("clip_by_global_norm", None, "optimizer"),
    ("global_norm", None, "optimizer"),
    # Conditioner networks.
    ("WeightNormConv2D.", None, "network"),
    ("ResNetConditioner.", None, "network"),
    # Coupling arithmetic.
    ("TanhScale.", None, "coupling"),
    ("AffineCoupling.", None, "coupling"),
    ("Coupling.", "plain_layers.py", "coupling"),
    ("checkerboard", "masks.py", "coupling"),
    ("channel", "masks.py", "coupling"),
    # Batch norm.
    ("BatchNormalization.", "batch_norm.py", "batch_norm"),
    ("FlowBatchNormState.", None, "batch_norm"),
    ("BatchNorm.", "plain_layers.py", "batch_norm"),
    # Reshapes between scales.
    ("Squeeze.", None, "reshape"),
    ("FactorOut.", None, "reshape"),
    ("MultiScaleFlow.", None, "reshape"),
    ("squeeze", "plain_layers.py", "reshape"),
    ("unsqueeze", "plain_layers.py", "reshape"),
    ("PlainRealNVP._scale_", "plain_keras.py", "reshape"),
    # Preprocessing, prior, loss and metric.
    ("LogitPreprocess.", None, "loss"),
    ("dequantization_noise", None, "loss"),
    ("Normal._log_prob", None, "loss"),
    ("RealNVP.", "realnvp.py", "loss"),
    ("FitMixin.", "fitting.py", "loss"),
    ("PlainRealNVP.", "plain_keras.py", "loss"),
    ("Mean.", None, "loss"),
    ("JAXTrainer._update_metrics_variables", None, "loss"),
)

_CONV_OPCODES = {"convolution", "dot"}
_LAYOUT_OPCODES = {"copy", "transpose", "copy-start", "copy-done", "reshape"}
_IGNORED_OPCODES = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


def part_of_stack(stack) -> str:
    """The part named by the innermost frame that matches ``RULES``; ``other`` if none does."""
    for file, function in stack:
        for prefix, suffix, part in RULES:
            if function.startswith(prefix) and (suffix is None or file.endswith(suffix)):
                return part
    return "other"


def pass_of(op_name: str) -> str:
    """``backward`` (a transposed JVP), ``forward`` (inside a JVP), ``update``, or
    ``unlabelled`` for instructions the compiler created without metadata."""
    if not op_name:
        return "unlabelled"
    if "transpose(jvp(" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    return "update"


def _is_conv(instruction: Instruction) -> bool:
    if instruction.opcode in _CONV_OPCODES:
        return True
    target = instruction.target.lower()
    return instruction.opcode == "custom-call" and any(k in target for k in ("conv", "gemm", "matmul", "dot"))


class Attribution:
    """Maps each instruction of a module to ``(part, pass)``."""

    def __init__(self, module: HloModule):
        self.module = module
        self._instructions = module.instructions()
        self._frame_parts: dict = {}
        self._cache: dict = {}

    def __contains__(self, name: str) -> bool:
        """Whether the module has an instruction called ``name``."""
        return name in self._instructions

    def _frame_part(self, frame):
        if frame not in self._frame_parts:
            self._frame_parts[frame] = part_of_stack(call_stack(self.module, frame))
        return self._frame_parts[frame]

    def _leaves(self, instruction: Instruction, depth: int = 0) -> list[Instruction]:
        """The instruction itself, or the instructions of the computations it calls."""
        if not instruction.calls or depth > 4:
            return [instruction]
        leaves = []
        for computation in instruction.calls:
            for inner in self.module.computations.get(computation, []):
                leaves.extend(self._leaves(inner, depth + 1))
        return leaves or [instruction]

    def __call__(self, name: str) -> tuple[str, str]:
        """``(part, pass)`` of the instruction called ``name`` (``("other", "update")`` if unknown)."""
        if name in self._cache:
            return self._cache[name]
        instruction = self._instructions.get(name)
        if instruction is None:
            result = ("other", "update")
        else:
            leaves = [leaf for leaf in self._leaves(instruction) if leaf.opcode not in _IGNORED_OPCODES]
            passes = collections.Counter(pass_of(leaf.op_name) for leaf in leaves if leaf.op_name)
            step_pass = passes.most_common(1)[0][0] if passes else pass_of(instruction.op_name)
            if any(_is_conv(leaf) for leaf in leaves) or _is_conv(instruction):
                part = "conv"
            elif (
                leaves
                and any(leaf.opcode == "convert" for leaf in leaves)
                and all(leaf.opcode == "convert" or leaf.opcode in _LAYOUT_OPCODES for leaf in leaves)
            ):
                part = "cast"
            elif instruction.opcode in _LAYOUT_OPCODES or (
                leaves and all(leaf.opcode in _LAYOUT_OPCODES for leaf in leaves)
            ):
                part = "layout"
            else:
                votes = collections.Counter(self._frame_part(leaf.frame) for leaf in leaves)
                votes.pop("other", None)
                if votes:
                    top = max(votes.values())
                    part = next(p for p in PARTS if votes.get(p) == top)
                else:
                    part = self._frame_part(instruction.frame)
            result = (part, step_pass)
        self._cache[name] = result
        return result


def static_counts(module: HloModule) -> dict:
    """Top-level instructions of the entry computation (each one a kernel or thunk, roughly) by kind."""
    entry = module.computations.get(module.entry, [])
    counts = collections.Counter()
    attribution = Attribution(module)
    for instruction in entry:
        if instruction.opcode in _IGNORED_OPCODES:
            continue
        counts["instructions"] += 1
        counts[f"opcode:{instruction.opcode}"] += 1
        counts[f"part:{attribution(instruction.name)[0]}"] += 1
    converts = sum(1 for body in module.computations.values() for i in body if i.opcode == "convert")
    counts["converts_anywhere"] = converts
    return dict(sorted(counts.items()))


# Traces -------------------------------------------------------------------------------
def load_trace_events(path: str | Path) -> list[dict]:
    """Trace events from a (gzipped) Chrome trace-event JSON file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        data = json.load(handle)
    return data.get("traceEvents", []) if isinstance(data, dict) else list(data)


def find_trace(directory: str | Path) -> Path:
    """The newest ``perfetto_trace.json.gz`` (or ``*.trace.json.gz``) under ``directory``."""
    directory = Path(directory)
    found = sorted(directory.rglob("perfetto_trace.json.gz")) or sorted(directory.rglob("*.trace.json.gz"))
    if not found:
        raise FileNotFoundError(f"no perfetto_trace.json.gz or *.trace.json.gz under {directory}")
    return max(found, key=lambda p: p.stat().st_mtime)


def operation_events(events: list[dict], module_name: str) -> tuple[list[dict], str]:
    """The complete events of ``module_name``'s XLA operations, and where they were taken from.

    On a GPU the device's events are used (the "XLA Ops" line if the trace has one, else
    the kernel streams), so host-side launches are not counted twice; on a CPU, the
    thunk events of the host.
    """
    process_names, thread_names = {}, {}
    for event in events:
        if event.get("ph") == "M" and event.get("name") == "process_name":
            process_names[event.get("pid")] = str(event.get("args", {}).get("name", ""))
        if event.get("ph") == "M" and event.get("name") == "thread_name":
            thread_names[(event.get("pid"), event.get("tid"))] = str(event.get("args", {}).get("name", ""))
    ops = [
        e
        for e in events
        if e.get("ph") == "X"
        and isinstance(e.get("args"), dict)
        and e["args"].get("hlo_op")
        and e["args"].get("hlo_module", "").split("(")[0] == module_name
        and not str(e.get("name", "")).startswith("end:")
    ]
    device = [
        e
        for e in ops
        if "/device:" in process_names.get(e.get("pid"), "") and "CPU" not in process_names.get(e.get("pid"), "")
    ]
    if device:
        xla_ops = [e for e in device if thread_names.get((e.get("pid"), e.get("tid")), "") == "XLA Ops"]
        return (xla_ops, "device XLA Ops line") if xla_ops else (device, "device kernel streams")
    return ops, "host operation events"


def profile_events(events: list[dict], module: HloModule, steps: int) -> dict:
    """Per-step operation time by part and pass, from the trace events of ``steps`` steps."""
    selected, source = operation_events(events, module.name)
    attribution = Attribution(module)
    by_part = collections.defaultdict(float)
    by_pass = collections.defaultdict(float)
    counts = collections.Counter()
    by_op = collections.defaultdict(float)
    unmatched = 0.0
    for event in selected:
        name = event["args"]["hlo_op"]
        part, step_pass = attribution(name)
        duration = float(event.get("dur", 0.0)) * 1e-3  # microseconds -> ms
        if name not in attribution:  # e.g. a whole CUDA graph ("command_buffer...")
            unmatched += duration
        by_part[part] += duration
        by_pass[step_pass] += duration
        counts[part] += 1
        by_op[name] += duration
    total = sum(by_part.values())
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:15]
    return {
        "event_source": source,
        "events": len(selected),
        "steps": steps,
        "op_ms_per_step": total / steps if steps else 0.0,
        "unmatched_ms_per_step": unmatched / steps if steps else 0.0,
        "ops_per_step": len(selected) / steps if steps else 0.0,
        "parts": {
            part: {
                "ms_per_step": by_part.get(part, 0.0) / steps,
                "fraction": (by_part.get(part, 0.0) / total) if total else 0.0,
                "ops_per_step": counts.get(part, 0) / steps,
            }
            for part in PARTS
        },
        "passes": {p: by_pass.get(p, 0.0) / steps for p in PASSES},
        "top_ops": [
            {"op": name, "part": attribution(name)[0], "pass": attribution(name)[1], "ms_per_step": ms / steps}
            for name, ms in top
        ],
    }
