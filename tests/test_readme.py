"""Every code block and command line of README.md and benchmarks/README.md runs as written.

Python blocks. The ``python`` blocks of one section run in document order in one
namespace: a section reads as one session, so a block may use a name that an earlier
block of its section defined. Each section starts with a fresh namespace in a fresh
working directory. A section that reads files another section writes (``SECTION_NEEDS``)
runs that section's blocks first, in the same directory. A block that runs on one
backend only (``ONLY_ON``, with the reason) is skipped on the other; the rest of its
section still runs, so a block after a skipped one imports what it uses.

Shell blocks (``bash``, ``sh``, ``console``). Backslash continuations are joined and
comments dropped; ``NAME=value`` before a command and ``export NAME=value`` set its
environment. The commands of a block run in order in a fresh working directory (the
repository root is where scripts and ``-m`` modules are found). ``python -m tfp_realnvp
ARGS`` runs in this process as ``tfp_realnvp.cli.main(ARGS)`` and ``python examples/X.py
ARGS`` as the script; the throughput and step-profile harnesses (they start worker
processes) and shell scripts run as subprocesses.
Every command line has a rule in ``COMMAND_RULES`` (the first whose pattern matches):

* ``run``: runs, with the rule's flags appended. Appending documented flags (a later
  flag overrides an earlier one, as argparse reads them) is the only shrinking of a
  command.
* ``parse``: would need the network (tfds downloads), several hosts, a GPU or Debian's
  dataset package, or runs for long: only its argument parser runs (``--help``-level),
  and the rule says why.
* ``check``: not a Python command line (make, pip, curl, bash): a check named in the
  rule (``make -n``, ``bash -n``, the pins or extras it names).
* ``exclude``: ``make test`` alone, which runs this suite itself (and creates both
  environments when they are missing).

A command that only runs on one backend (``KERAS_BACKEND=jax`` in front of it, the
``.venv``/``.venv-jax`` interpreters) is parsed on the other; ``export`` exists on the
TensorFlow backend only and is skipped elsewhere. In the scripts' try-out commands the
documented variables ``OUT`` (moved into the test's directory), ``PYTHON`` (this
environment's interpreter) and the time budgets of their rule are replaced.
``test_every_command_has_a_rule`` fails for a new README command without one.

Shrinking. Python blocks run with the keyword arguments of ``SHRINK_KEYWORDS`` set in
every call of the named callables (sizes, epochs, steps, the share of the shipped images
in the training split: arguments that the API documents), changed in the syntax tree,
never in the text. Commands get the flags of their rule. Graphs are built quickly for the
whole suite (``conftest.py``: most XLA optimisations off on JAX, no Grappler rewrites on
TensorFlow): the blocks run each graph a few times. What takes long even so is marked ``slow``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import runpy
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest
import tomllib

BACKEND = keras.backend.backend()
REPO = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "benchmarks/README.md")
SHELL_LANGUAGES = ("bash", "sh", "console", "shell")


# Python blocks ---------------------------------------------------------------------------

#: The share of the shipped images in the training split: 9,936 / 64, so that a block's
#: work on the test split (bits/dim, classify, OOD scores) is one batch of 64 images.
TRAIN_FRACTION = 0.9936

#: Keyword arguments set in every call of these callables (a method or function name).
SHRINK_KEYWORDS = {
    "MultiScaleFlow": {"num_scales": 1, "num_filters": 4, "num_blocks": 1},
    # Two steps: the first coupling of q(u | x) reads x alone, the later ones u too.
    "RealNVP": {
        "num_scales": 1,
        "num_filters": 4,
        "num_blocks": 1,
        "dequantization_steps": 2,
        "dequantization_filters": 4,
    },
    # With steps_per_epoch and no batch_size, Keras makes each batch 1/steps of the data.
    "fit": {"epochs": 1, "steps_per_epoch": 2, "validation_steps": 1, "batch_size": 64},
    "load_images": {"train_fraction": TRAIN_FRACTION},
    "load_labelled_images": {"train_fraction": TRAIN_FRACTION},
    "fit_ood": {"max_images": 64},
}

#: (document, section) -> the sections whose files it reads, run before it.
SECTION_NEEDS = {("README.md", "Serving"): [("README.md", "Using it")]}

#: A phrase of a block -> (the one backend it runs on, why).
ONLY_ON = {
    "dist.sample(4, seed=1)": ("tensorflow", "TFP on JAX takes a jax.random.PRNGKey seed, not an integer"),
    "tfp_realnvp.export_saved_model(": ("tensorflow", "SavedModel export needs the TensorFlow backend"),
    "tf.train.Checkpoint(": ("tensorflow", "the TensorFlow training loop and tf.train.Checkpoint"),
    "flow.stateless_call(": ("jax", "the JAX training loop with jax.jit and jax.grad"),
    "dist.sample(seed=0,": ("tensorflow", "TFP on JAX takes a jax.random.PRNGKey seed, not an integer"),
    "tf.saved_model.load(": ("tensorflow", "loading a SavedModel, written on the TensorFlow backend"),
}

# Sections whose Python blocks take long even shrunk (Serving first runs "Using it" for its export).
SLOW_SECTIONS = {("README.md", "Serving")}


@dataclasses.dataclass(frozen=True)
class Block:
    document: str
    section: str
    language: str
    line: int  # first line of the code
    text: str


def read_blocks(document: str) -> list[Block]:
    """The fenced code blocks of ``document``, each with the ``##``/``###`` heading above it."""
    blocks, section, language, lines, start = [], "", None, [], 0
    for number, line in enumerate((REPO / document).read_text().splitlines(), 1):
        if language is None:
            fence = re.match(r"^```(\w*)\s*$", line)
            if fence:
                language, lines, start = fence.group(1) or "text", [], number + 1
            elif re.match(r"^#{2,3} ", line):
                section = line.lstrip("#").strip()
        elif line.startswith("```"):
            blocks.append(Block(document, section, language, start, "\n".join(lines)))
            language = None
        else:
            lines.append(line)
    assert language is None, f"{document}: a code block opened at line {start} is never closed"
    return blocks


ALL_BLOCKS = [block for document in DOCUMENTS for block in read_blocks(document)]
PYTHON_SECTIONS = list(dict.fromkeys((b.document, b.section) for b in ALL_BLOCKS if b.language == "python"))


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


class _Shrink(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        settings = SHRINK_KEYWORDS.get(_callee(node))
        if settings:
            node.keywords = [k for k in node.keywords if k.arg not in settings] + [
                ast.keyword(arg=name, value=ast.Constant(value)) for name, value in settings.items()
            ]
        return node


def shrunk(source: str) -> str:
    """``source`` with the keywords of ``SHRINK_KEYWORDS`` set in every call they name."""
    return ast.unparse(ast.fix_missing_locations(_Shrink().visit(ast.parse(source))))


def backend_of(block: Block) -> tuple[str, str] | None:
    """The (backend, reason) a block is limited to, or ``None``."""
    found = {backend: reason for phrase, (backend, reason) in ONLY_ON.items() if phrase in block.text}
    assert len(found) <= 1, f"{block.document}:{block.line} is limited to several backends: {found}"
    return next(iter(found.items()), None)


def run_python_section(key: tuple[str, str]) -> list[str]:
    """Runs the Python blocks of one section in one namespace; returns the skipped blocks' reasons."""
    skipped, namespace = [], {"__name__": "__readme__"}
    for block in (b for b in ALL_BLOCKS if (b.document, b.section) == key and b.language == "python"):
        only = backend_of(block)
        if only and only[0] != BACKEND:
            skipped.append(f"line {block.line}: {only[1]}")
            continue
        code = compile(shrunk(block.text), f"{block.document}, line {block.line}", "exec")
        exec(code, namespace)  # noqa: S102 (the README's own code)
    return skipped


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(k, marks=[pytest.mark.slow] if k in SLOW_SECTIONS else [], id=f"{k[0]}:{k[1]}")
        for k in PYTHON_SECTIONS
    ],
)
def test_python_blocks(key, tmp_path, monkeypatch):
    blocks = [b for b in ALL_BLOCKS if (b.document, b.section) == key and b.language == "python"]
    elsewhere = [f"line {b.line}: {backend_of(b)[1]}" for b in blocks if backend_of(b) and backend_of(b)[0] != BACKEND]
    if len(elsewhere) == len(blocks):
        pytest.skip(f"every block runs on another backend: {'; '.join(elsewhere)}")
    monkeypatch.chdir(tmp_path)
    for needed in SECTION_NEEDS.get(key, []):
        run_python_section(needed)
    run_python_section(key)


def test_python_blocks_are_valid_python():
    """Every Python block compiles, on either backend (those run elsewhere included)."""
    for block in ALL_BLOCKS:
        if block.language == "python":
            compile(block.text, f"{block.document}, line {block.line}", "exec")


def test_shrinking_changes_only_keywords():
    """Shrinking keeps every statement and call; it only sets keyword arguments."""
    for block in ALL_BLOCKS:
        if block.language != "python":
            continue
        before, after = ast.parse(block.text), ast.parse(shrunk(block.text))
        for node in (*ast.walk(before), *ast.walk(after)):
            if isinstance(node, ast.Call) and _callee(node) in SHRINK_KEYWORDS:
                node.keywords = [k for k in node.keywords if k.arg not in SHRINK_KEYWORDS[_callee(node)]]
        assert ast.dump(before) == ast.dump(after), f"{block.document}:{block.line}"


def test_every_limit_names_a_block():
    """Each phrase of ``ONLY_ON`` and each key of ``SECTION_NEEDS`` is still in the documents."""
    for phrase in ONLY_ON:
        assert any(phrase in b.text for b in ALL_BLOCKS if b.language == "python"), phrase
    for key, needed in SECTION_NEEDS.items():
        assert {key, *needed} <= set(PYTHON_SECTIONS), key
    assert SLOW_SECTIONS <= set(PYTHON_SECTIONS)


# Shell blocks ----------------------------------------------------------------------------


@dataclasses.dataclass
class Command:
    block: Block
    env: dict[str, str]
    argv: list[str]

    @property
    def text(self) -> str:
        """The command as the rules match it: its environment prefix, then its words."""
        return shlex.join([f"{k}={v}" for k, v in self.env.items()] + self.argv)


def read_commands(block: Block) -> list[Command]:
    """The command lines of a shell block; ``export NAME=value`` lines set the environment of those after."""
    commands, exported = [], {}
    for line in re.sub(r"\\\n", " ", block.text).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            exported.update(word.split("=", 1) for word in words[1:])
            continue
        env = dict(exported)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        if words:
            commands.append(Command(block, env, words))
    return commands


SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.language in SHELL_LANGUAGES]
ALL_COMMANDS = [command for block in SHELL_BLOCKS for command in read_commands(block)]

#: Flags of a tiny training run: one scale of 4 filters and one block, two steps, 16 test images.
TINY_MODEL = ["--num-scales", "1", "--num-filters", "4", "--num-blocks", "1", "--batch-size", "16"]
TINY_MODEL += ["--max-images", "16", "--verbose", "0"]
if BACKEND == "tensorflow":
    TINY_MODEL += ["--jit-compile", "false"]
#: For a command that gives --epochs (--steps would be refused beside it), and one that gives --steps.
TINY_TRAIN = TINY_MODEL + ["--epochs", "1", "--steps-per-epoch", "2"]
TINY_STEPS = TINY_MODEL + ["--steps", "2"]
TINY_THROUGHPUT = ["--config", "tiny", "--batch-sizes", "8", "--inference-batch-size", "8"]
TINY_THROUGHPUT += ["--repeats", "1", "--warmup", "0", "--steps", "1"]

NETWORK = "downloads its data through tfds (no network in the tests)"
DEBIAN = "reads Debian's dataset-fashion-mnist package (/usr/share/datasets), not a dependency"
GPU = "measured on a GPU; its CPU try-out below runs it"
SERVING = "needs a running TF Serving server (tensorflow_model_server is not a dependency)"


@dataclasses.dataclass(frozen=True)
class Rule:
    """What the tests do with the commands that ``pattern`` matches (``re.search`` on ``Command.text``)."""

    pattern: str
    kind: str  # run, parse, check, exclude
    extra: tuple[str, ...] = ()  # run: flags appended
    reason: str = ""  # parse, check, exclude: why it does not run; run: why it is slow
    slow: bool = False
    backend: str | None = None  # the one backend it runs on (parsed on the other)
    env: tuple[tuple[str, str], ...] = ()  # run: environment settings replaced (documented variables)


COMMAND_RULES = [
    Rule(r"^make test$", "exclude", reason="runs this test suite itself and creates both environments when missing"),
    Rule(r"^make demo$", "check", reason="its recipe (make -n) parses; the slow test runs it for 2 steps"),
    Rule(
        r"^pip install ", "check", reason="installs an environment: the constraints file and the extras it names exist"
    ),
    Rule(r"KERAS_DISTRIBUTION_", "parse", reason="a job of several hosts (and " + NETWORK + ")"),
    Rule(r"--data (cifar10|celeb_a)\b", "parse", reason=NETWORK),
    Rule(r"/usr/share/datasets", "parse", reason=DEBIAN),
    Rule(r"-m tfp_realnvp train .*--data img_align_celeba", "run", tuple(TINY_STEPS), slow=True, backend="tensorflow"),
    Rule(
        r"^python examples/celeba\.py .*--data img_align_celeba",
        "run",
        tuple(TINY_TRAIN),
        slow=True,
        backend="tensorflow",
    ),
    Rule(r"^python -m tfp_realnvp train ", "run", tuple(TINY_TRAIN)),
    Rule(r"^python -m tfp_realnvp evaluate ", "run", ("--max-images", "16", "--classify-images", "16")),
    Rule(r"^python -m tfp_realnvp sample ", "run"),
    Rule(r"^python -m tfp_realnvp export ", "run", backend="tensorflow"),
    Rule(r"^curl ", "check", reason=SERVING),
    Rule(r"-m pip download ", "check", reason="downloads wheels: the pins it names are constraints-jax.txt's"),
    Rule(r"^(GPU_\w+=\S+ )*bash benchmarks/gpu_\w+\.sh$", "check", reason=GPU),
    Rule(
        r"GPU_CHECK_SKIP_INSTALL=1 .* bash benchmarks/gpu_\w+\.sh$",
        "run",
        reason="compiles the tiny model's steps on CPU",
        slow=True,
        backend="jax",
        env=(("GPU_CHECK_BUDGET_S", "280"), ("GPU_CHECK_RUN_TIMEOUT_S", "270")),
    ),
    Rule(r"KERAS_BACKEND=tensorflow .*-m benchmarks\.throughput ", "run", tuple(TINY_THROUGHPUT), slow=True),
    Rule(r"KERAS_BACKEND=jax .*-m benchmarks\.throughput ", "run", tuple(TINY_THROUGHPUT), slow=True),
    Rule(r"^python3 -m benchmarks\.summarize ", "run", slow=True),
    Rule(r"^python3 -m benchmarks\.throughput .*--skip-baseline", "parse", reason="measured on an H200 (a GPU)"),
    Rule(
        r"-m benchmarks\.step_profile ",
        "run",
        ("--config", "tiny", "--batch-size", "8", "--repeats", "1", "--warmup", "0", "--profile-steps", "1")
        + ("--output", "step_profile.json"),
        slow=True,
    ),
]


def rule_of(command: Command) -> Rule:
    for rule in COMMAND_RULES:
        if re.search(rule.pattern, command.text):
            return rule
    raise AssertionError(f"{command.block.document}:{command.block.line}: no rule for {command.text!r}")


def backend_of_command(command: Command, rule: Rule) -> str | None:
    """The one backend a command runs on: its ``KERAS_BACKEND``, its interpreter, or its rule's."""
    program = command.argv[0]
    if ".venv-jax/" in program:
        return "jax"
    if ".venv/" in program:
        return "tensorflow"
    return command.env.get("KERAS_BACKEND") or rule.backend


def test_every_command_has_a_rule():
    """A command added to a README without a rule fails here, naming it."""
    for command in ALL_COMMANDS:
        rule_of(command)
    assert [r.pattern for r in COMMAND_RULES if r.kind == "exclude"] == [r"^make test$"]


def test_every_rule_matches_a_command():
    """No rule outlives the command it was written for."""
    for rule in COMMAND_RULES:
        assert any(rule_of(c) is rule for c in ALL_COMMANDS), rule.pattern


# Parsing: the command's own argument parser, stopped when it has parsed ---------------------


class _Parsed(Exception):
    def __init__(self, namespace):
        super().__init__("parsed")
        self.namespace = namespace


@contextlib.contextmanager
def _stop_after_parsing():
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = parse_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original


def _module_and_args(argv: list[str]) -> tuple[str, list[str]]:
    """``(module or script path, arguments)`` of a ``python -m MODULE ...`` or ``python SCRIPT ...`` command."""
    assert re.search(r"(^|/)python3?$", argv[0]), argv
    if argv[1] == "-m":
        return argv[2], argv[3:]
    return str(REPO / argv[1]), argv[2:]


def _main_of(target: str):
    """The ``main(argv)`` of a module or example script."""
    if target == "tfp_realnvp":
        from tfp_realnvp.cli import main

        return main
    if target.endswith(".py"):
        return runpy.run_path(target, run_name="readme")["main"]
    import importlib

    return importlib.import_module(target).main


def parse_command(command: Command) -> argparse.Namespace:
    """Parses a Python command line with its program's own parser; nothing runs."""
    if command.argv[0] == "bash":
        subprocess.run(["bash", "-n", str(REPO / command.argv[1])], check=True)
        return argparse.Namespace()
    target, args = _module_and_args(command.argv)
    if target == "benchmarks.summarize":  # no flags: file names or patterns
        assert callable(_main_of(target)) and args
        return argparse.Namespace()
    with _stop_after_parsing(), pytest.raises(_Parsed) as parsed:
        _main_of(target)(args)
    namespace = parsed.value.namespace
    if target == "tfp_realnvp" and namespace.command == "train":
        from tfp_realnvp.cli.train import training_config

        training_config(namespace)  # the run's options are checked as the run would check them
    return namespace


def _pyproject_extras() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def check_command(command: Command, tmp_path: pathlib.Path) -> None:
    """The named check of a command that is not a Python command line."""
    argv = command.argv
    if argv[:2] == ["make", "demo"]:
        recipe = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        line = [x for x in recipe.splitlines() if "-m tfp_realnvp demo" in x][-1]
        words = shlex.split(line)
        assert words[0].endswith("/bin/python"), line
        parse_command(Command(command.block, {}, ["python", *words[1:]]))
    elif argv[0] == "pip":
        constraints = argv[argv.index("-c") + 1]
        assert (REPO / constraints).is_file(), constraints
        package = argv[argv.index("-e") + 1]
        assert package.startswith(".[")
        assert set(package[2:-1].split(",")) <= _pyproject_extras(), package
    elif argv[0] == "curl":
        body = json.loads(argv[argv.index("-d") + 1].replace("...", "0"))
        assert body["signature_name"] in ("serving_default", "sample", "encode", "decode"), body
    elif argv[1:3] == ["-m", "pip"]:
        pins = dict(line.split("==") for line in (REPO / "constraints-jax.txt").read_text().split() if "==" in line)
        named = dict(word.split("==") for word in argv if "==" in word)
        assert named and all(pins.get(name) == version for name, version in named.items()), (named, pins)
    elif argv[0] == "bash":
        subprocess.run(["bash", "-n", str(REPO / argv[1])], check=True)
    else:
        raise AssertionError(f"no check for {command.text!r}")


@pytest.mark.parametrize(
    "command", ALL_COMMANDS, ids=[f"{c.block.document}:{c.block.line}:{c.text[:70]}" for c in ALL_COMMANDS]
)
def test_command_parses(command, tmp_path, monkeypatch):
    """Every command line of the documents: its parser accepts it, or its check passes."""
    monkeypatch.chdir(tmp_path)
    rule = rule_of(command)
    if rule.kind == "exclude":
        pytest.skip(rule.reason)
    if rule.kind == "check":
        check_command(command, tmp_path)
        return
    if command.argv[1:4] == ["-m", "tfp_realnvp", "export"] and BACKEND != "tensorflow":
        pytest.skip("the export command exists on the TensorFlow backend only")
    parse_command(command)


# Running ---------------------------------------------------------------------------------


def _celeba_folder(root: pathlib.Path, count: int = 24) -> None:
    """A stand-in for the img_align_celeba folder: ``count`` 178x218 JPEGs."""
    from PIL import Image

    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(root / f"{i:06d}.jpg")


#: Data a command names that a user brings (made here, as small as it runs).
STAND_INS = {"img_align_celeba": _celeba_folder}


def _subprocess_env(command: Command, rule: Rule, tmp_path: pathlib.Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", **command.env, **dict(rule.env)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if "PYTHON" in env:
        env["PYTHON"] = sys.executable  # the interpreter of this backend's environment
    if "OUT" in env:
        env["OUT"] = str(tmp_path / pathlib.Path(env["OUT"]).name)
    return env


def run_command(command: Command, rule: Rule, tmp_path: pathlib.Path, capsys) -> None:
    """Runs one command (its rule's flags appended) in the working directory ``tmp_path``."""
    argv = [*command.argv, *rule.extra]
    for word in argv:
        if word in STAND_INS and not (tmp_path / word).exists():
            STAND_INS[word](tmp_path / word)
    if argv[0] == "bash" or argv[1:3] in (["-m", "benchmarks.throughput"], ["-m", "benchmarks.step_profile"]):
        # Harnesses that start worker processes, and shell scripts: subprocesses.
        argv = ["bash", str(REPO / argv[1])] if argv[0] == "bash" else [sys.executable, *argv[1:]]
        strays = set(REPO.glob("*.partial.json"))
        try:
            proc = subprocess.run(
                argv,
                cwd=tmp_path,
                env=_subprocess_env(command, rule, tmp_path),
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:  # the partial reports a throughput worker may leave in the repository root
            for path in set(REPO.glob("*.partial.json")) - strays:
                path.unlink()
        assert proc.returncode == 0, f"{command.text}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        if argv[2] == "benchmarks.throughput":
            output = tmp_path / argv[len(argv) - 1 - argv[::-1].index("--output") + 1]
            results = json.loads(output.read_text())["results"]
            assert results.get("package", {}).get("train"), f"{command.text}: no package results in {results}"
        return
    target, args = _module_and_args(argv)
    if target == "benchmarks.summarize":  # the shell expands the pattern
        args = [str(p) for pattern in args for p in sorted(tmp_path.glob(pattern))]
    status = _main_of(target)(args)
    captured = capsys.readouterr()
    assert status in (0, None), f"{command.text} exited with {status}:\n{captured.err[-3000:]}"


def _runnable(block: Block) -> bool:
    return any(rule_of(c).kind == "run" for c in read_commands(block))


def _block_is_slow(block: Block) -> bool:
    return any(rule_of(c).slow for c in read_commands(block) if rule_of(c).kind == "run")


RUN_BLOCKS = [b for b in SHELL_BLOCKS if _runnable(b)]

#: Blocks (by section) that fail for a bug outside the documents; each turns green when it is fixed.
KNOWN_FAILURES: dict[str, str] = {}


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            b,
            marks=([pytest.mark.slow] if _block_is_slow(b) else [])
            + (
                [pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[b.section])]
                if b.section in KNOWN_FAILURES
                else []
            ),
            id=f"{b.document}:{b.line}:{b.section}",
        )
        for b in RUN_BLOCKS
    ],
)
def test_shell_block_runs(block, tmp_path, monkeypatch, capsys):
    """The commands of a block, in order, in one working directory; each of another backend
    or without a ``run`` rule is left to ``test_command_parses``."""
    monkeypatch.chdir(tmp_path)
    ran = []
    for command in read_commands(block):
        rule = rule_of(command)
        only = backend_of_command(command, rule)
        if rule.kind != "run" or (only and only != BACKEND):
            continue
        run_command(command, rule, tmp_path, capsys)
        ran.append(command.text)
    if not ran:
        pytest.skip(f"its commands run on another backend than {BACKEND}")


@pytest.mark.slow
@pytest.mark.tf_only
def test_make_demo_recipe_runs(tmp_path, monkeypatch, capsys):
    """``make demo``'s command, two steps long (``--steps``), writes its grids and SavedModel."""
    recipe = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    words = shlex.split([x for x in recipe.splitlines() if "-m tfp_realnvp demo" in x][-1])
    monkeypatch.chdir(tmp_path)
    from tfp_realnvp.cli import main

    assert main([*words[3:], "--steps", "2", "--verbose", "0"]) == 0, capsys.readouterr().err[-3000:]
    output = tmp_path / words[words.index("--output-dir") + 1]
    assert (output / "samples.png").is_file() and (output / "saved_model" / "1" / "saved_model.pb").is_file()
