"""Reads the optimized HLO text of a compiled XLA program (standard library only).

The text is what ``jax.jit(f).lower(...).compile().as_text()`` returns. Every instruction
carries ``metadata={op_name=... stack_frame_id=N}``, and the module ends with tables
(``FileNames``, ``FunctionNames``, ``FileLocations``, ``StackFrames``) that resolve a
frame id to the Python call stack that created it. ``parse_hlo`` reads the computations
and those tables, ``call_stack`` resolves a frame, and ``program_difference`` compares two
programs as multisets of ``(opcode, result type)``. ``hlo_profile.py`` attributes the
instructions to parts of a flow.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field

_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_FRAME_ID = re.compile(r"stack_frame_id=(\d+)")
_CALLS = re.compile(r"calls=(\{[^}]*\}|%[\w.\-]+)")
_TARGET = re.compile(r'custom_call_target="([^"]*)"')
_TABLE_ROW = re.compile(r"^(\d+)\s+(.*)$")
_FIELDS = re.compile(r"(\w+)=(-?\d+)")


@dataclass
class Instruction:
    """One HLO instruction: name, opcode, op_name, call-stack frame and called computations."""

    name: str
    opcode: str
    op_name: str = ""
    frame: int | None = None
    calls: tuple = ()
    target: str = ""


@dataclass
class HloModule:
    """The parts of an optimized HLO module's text that attribution needs."""

    name: str
    computations: dict = field(default_factory=dict)  # name -> [Instruction]
    entry: str = ""
    files: dict = field(default_factory=dict)
    functions: dict = field(default_factory=dict)
    locations: dict = field(default_factory=dict)  # id -> (file id, function id, line)
    frames: dict = field(default_factory=dict)  # id -> (location id, parent id or None)

    def instructions(self):
        """``{name: Instruction}`` over all computations."""
        return {i.name: i for body in self.computations.values() for i in body}


def _split_type(rest: str) -> str:
    """Strips the result type in front of the opcode (a tuple type has nested parentheses)."""
    rest = rest.lstrip()
    if not rest.startswith("("):
        return rest.split(" ", 1)[1] if " " in rest else ""
    depth = 0
    for i, char in enumerate(rest):
        depth += char == "("
        depth -= char == ")"
        if depth == 0:
            return rest[i + 1 :].lstrip()
    return ""


def parse_instruction(line: str) -> Instruction | None:
    """An ``Instruction`` from one line of HLO text, or ``None`` for other lines."""
    match = _INSTRUCTION.match(line)
    if not match:
        return None
    name, rest = match.groups()
    after_type = _split_type(rest)
    opcode = after_type.split("(", 1)[0].strip()
    if not opcode or " " in opcode:
        return None
    op_name = _OP_NAME.search(rest)
    frame = _FRAME_ID.search(rest)
    calls = _CALLS.search(rest)
    target = _TARGET.search(rest)
    called = ()
    if calls:
        called = tuple(c.strip().lstrip("%") for c in calls.group(1).strip("{}").split(",") if c.strip())
    return Instruction(
        name=name,
        opcode=opcode,
        op_name=op_name.group(1) if op_name else "",
        frame=int(frame.group(1)) if frame else None,
        calls=called,
        target=target.group(1) if target else "",
    )


def parse_hlo(text: str) -> HloModule:
    """Parses optimized HLO text (``Compiled.as_text()``)."""
    header = re.search(r"^HloModule\s+([\w.\-]+)", text, re.MULTILINE)
    module = HloModule(name=header.group(1) if header else "")
    table = None
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            table, current = stripped, None
            continue
        if table is not None:
            row = _TABLE_ROW.match(stripped)
            if row:
                key, value = int(row.group(1)), row.group(2)
                if table == "FileNames":
                    module.files[key] = value.strip('"')
                elif table == "FunctionNames":
                    module.functions[key] = value.strip('"')
                else:
                    fields = {k: int(v) for k, v in _FIELDS.findall(value)}
                    if table == "FileLocations":
                        module.locations[key] = (
                            fields.get("file_name_id"),
                            fields.get("function_name_id"),
                            fields.get("line"),
                        )
                    else:
                        # The printed parent id is one more than the parent's row; 1 marks the root.
                        parent = fields.get("parent_frame_id", 0) - 1
                        module.frames[key] = (fields.get("file_location_id"), parent if parent > 0 else None)
                continue
            if stripped:
                table = None
        computation = _COMPUTATION.match(line)
        if computation:
            current = computation.group(1)
            module.computations[current] = []
            if line.startswith("ENTRY"):
                module.entry = current
            continue
        if stripped == "}":
            current = None
            continue
        if current is not None:
            instruction = parse_instruction(line)
            if instruction is not None:
                module.computations[current].append(instruction)
    return module


def call_stack(module: HloModule, frame: int | None) -> list[tuple[str, str]]:
    """``[(file, function qualname), ...]`` from the innermost frame outwards."""
    stack, seen = [], set()
    while frame is not None and frame in module.frames and frame not in seen:
        seen.add(frame)
        location, parent = module.frames[frame]
        file_id, function_id, _ = module.locations.get(location, (None, None, None))
        stack.append((module.files.get(file_id, ""), module.functions.get(function_id, "")))
        frame = parent
    return stack


def instruction_signatures(text: str) -> collections.Counter:
    """How often each ``(opcode, result type)`` occurs among all instructions of an HLO text."""
    signatures = collections.Counter()
    for line in text.splitlines():
        instruction = parse_instruction(line)
        if instruction is None:
            continue
        rest = _INSTRUCTION.match(line).group(2).lstrip()
        result_type = rest[: len(rest) - len(_split_type(rest))].strip()
        signatures[(instruction.opcode, result_type)] += 1
    return signatures


def program_difference(text_a: str, text_b: str, *, examples: int = 10) -> dict:
    """Compares two compiled programs as multisets of ``(opcode, result type)``.

    Returns:
        ``instructions`` (the two totals), ``differing`` (instructions without a
        counterpart in the other program) and a few ``only_in_a`` / ``only_in_b`` examples.
    """
    a, b = instruction_signatures(text_a), instruction_signatures(text_b)
    only_a, only_b = a - b, b - a
    return {
        "instructions": [sum(a.values()), sum(b.values())],
        "differing": sum(only_a.values()) + sum(only_b.values()),
        "only_in_a": [describe_signature(sig, n) for sig, n in only_a.most_common(examples)],
        "only_in_b": [describe_signature(sig, n) for sig, n in only_b.most_common(examples)],
    }


def describe_signature(signature: tuple, count: int, width: int = 100) -> str:
    """``"<count>x <opcode> <result type>"``, a long (tuple) type shortened to ``width`` characters."""
    opcode, result_type = signature
    if len(result_type) > width:
        result_type = result_type[: width - 3] + "..."
    return f"{count}x {opcode} {result_type}"
