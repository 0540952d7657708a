"""Tests for the train-step profile: HLO parsing, attribution to parts, trace selection, and
an end-to-end run of ``benchmarks/step_profile.py`` on the JAX backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from benchmarks import hlo_profile, hlo_text, step_profile

REPO = Path(__file__).resolve().parents[1]

# A small module in the layout of ``Compiled.as_text()``: frame tables, a fused reduction
# from the batch-norm statistics (called through keras' ``mean``), a cuDNN convolution in
# the backward pass, a compiler copy, and a fusion of Adam arithmetic with one
# unattributed instruction.
HLO = """\
HloModule jit_train_step, is_scheduled=true, entry_computation_layout={(f32[4,8]{1,0})->f32[8]{0}}

FileNames
1 "/src/tfp_realnvp/bijectors/batch_norm.py"
2 "/src/tfp_realnvp/networks/resnet.py"
3 "/src/keras/src/optimizers/adam.py"
4 "/src/keras/src/ops/numpy.py"
5 "/src/keras/src/backend/jax/trainer.py"

FunctionNames
1 "BatchNormalization._statistics"
2 "ResNetConditioner.call"
3 "Adam.update_step"
4 "mean"
5 "JAXTrainer.train_step"

FileLocations
1 {file_name_id=5 function_name_id=5 line=130 end_line=130 column=0 end_column=9}
2 {file_name_id=1 function_name_id=1 line=10 end_line=10 column=4 end_column=20}
3 {file_name_id=4 function_name_id=4 line=40 end_line=40 column=4 end_column=20}
4 {file_name_id=2 function_name_id=2 line=20 end_line=20 column=4 end_column=20}
5 {file_name_id=3 function_name_id=3 line=30 end_line=30 column=4 end_column=20}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=2}
3 {file_location_id=3 parent_frame_id=3}
4 {file_location_id=4 parent_frame_id=2}
5 {file_location_id=5 parent_frame_id=2}


%region_0 (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.9 = f32[] add(%a, %b)
}

%fused_computation (param_0: f32[4,8]) -> f32[8] {
  %param_0 = f32[4,8]{1,0} parameter(0)
  %constant.1 = f32[] constant(0)
  ROOT %reduce.1 = f32[8]{0} reduce(%param_0, %constant.1), dimensions={0}, to_apply=%region_0, metadata={op_name="jit(train_step)/jvp(model)/reduce_sum" stack_frame_id=3}
}

%fused_computation.1 (param_0.1: f32[8], param_1.1: f32[8]) -> (f32[8], f32[8]) {
  %param_0.1 = f32[8]{0} parameter(0)
  %param_1.1 = f32[8]{0} parameter(1)
  %multiply.2 = f32[8]{0} multiply(%param_0.1, %param_1.1), metadata={op_name="jit(train_step)/mul" stack_frame_id=5}
  %sqrt.1 = f32[8]{0} sqrt(%multiply.2), metadata={op_name="jit(train_step)/sqrt" stack_frame_id=5}
  %negate.1 = f32[8]{0} negate(%param_0.1), metadata={op_name="jit(train_step)/neg" stack_frame_id=1}
  ROOT %tuple.3 = (f32[8]{0}, f32[8]{0}) tuple(%sqrt.1, %negate.1)
}

ENTRY %main.7 (p0: f32[4,8], p1: f32[3,3,8,8]) -> (f32[8], f32[8]) {
  %p0 = f32[4,8]{1,0} parameter(0), metadata={op_name="state[0][0]"}
  %p1 = f32[3,3,8,8]{3,2,1,0} parameter(1)
  %custom-call.4 = (f32[4,8]{1,0}, u8[0]{0}) custom-call(%p0, %p1), custom_call_target="__cudnn$convForward", metadata={op_name="jit(train_step)/transpose(jvp(model))/conv_general_dilated" stack_frame_id=4}
  %input_reduce_fusion = f32[8]{0} fusion(%p0), kind=kInput, calls=%fused_computation, metadata={op_name="jit(train_step)/jvp(model)/reduce_sum" stack_frame_id=3}
  %copy.1 = f32[4,8]{0,1} copy(%p0)
  %convert.2 = bf16[4,8]{1,0} convert(%p0)
  ROOT %loop_fusion = (f32[8]{0}, f32[8]{0}) fusion(%input_reduce_fusion, %input_reduce_fusion), kind=kLoop, calls=%fused_computation.1
}
"""


def _event(pid, tid, op, dur, module="jit_train_step"):
    return {"ph": "X", "pid": pid, "tid": tid, "name": op, "dur": dur, "args": {"hlo_op": op, "hlo_module": module}}


def _gpu_trace():
    meta = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "name": "thread_name", "pid": 2, "tid": 1, "args": {"name": "XLA Ops"}},
        {"ph": "M", "name": "thread_name", "pid": 2, "tid": 2, "args": {"name": "Stream #7"}},
    ]
    ops = {"custom-call.4": 100.0, "input_reduce_fusion": 50.0, "copy.1": 10.0, "loop_fusion": 40.0}
    events = []
    for _ in range(2):  # two steps
        for op, dur in ops.items():
            events.append(_event(2, 1, op, dur))  # the XLA Ops line: counted
            events.append(_event(2, 2, op, dur))  # the same kernels on the stream line: not counted
            events.append(_event(1, 9, op, 5.0))  # host-side launch: not counted
    events.append(_event(2, 1, "fusion.99", 1000.0, module="jit_other"))  # another program
    return meta + events


def test_parse_hlo_reads_instructions_and_frame_tables():
    module = hlo_text.parse_hlo(HLO)
    assert module.name == "jit_train_step"
    assert module.entry == "main.7"
    entry = {i.name: i for i in module.computations["main.7"]}
    assert entry["custom-call.4"].opcode == "custom-call"  # opcode after a tuple type
    assert entry["custom-call.4"].target == "__cudnn$convForward"
    assert entry["input_reduce_fusion"].calls == ("fused_computation",)
    assert entry["loop_fusion"].opcode == "fusion"
    assert entry["copy.1"].frame is None
    assert module.files[3].endswith("adam.py")
    # Row 3 (keras' mean) was called from row 2 (the batch-norm statistics), from row 1.
    stack = hlo_text.call_stack(module, 3)
    assert [function for _, function in stack] == ["mean", "BatchNormalization._statistics", "JAXTrainer.train_step"]


def test_parse_instruction_ignores_other_lines():
    assert hlo_text.parse_instruction("FileNames") is None
    assert hlo_text.parse_instruction("}") is None
    inst = hlo_text.parse_instruction(
        '  ROOT %add.3 = f32[2]{0} add(%a, %b), metadata={op_name="jit(f)/jvp(g)/add" stack_frame_id=12}'
    )
    assert (inst.name, inst.opcode, inst.op_name, inst.frame) == ("add.3", "add", "jit(f)/jvp(g)/add", 12)


@pytest.mark.parametrize(
    "stack, part",
    [
        (
            [("/k/numpy.py", "mean"), ("/p/tfp_realnvp/bijectors/batch_norm.py", "BatchNormalization._statistics")],
            "batch_norm",
        ),
        ([("/b/benchmarks/plain_layers.py", "BatchNorm.inverse")], "batch_norm"),
        ([("/b/benchmarks/plain_layers.py", "Coupling._scale_and_shift")], "coupling"),
        ([("/p/tfp_realnvp/networks/weight_norm.py", "WeightNormConv2D.kernel")], "network"),
        ([("/k/optimizers/base_optimizer.py", "BaseOptimizer._clip_gradients")], "optimizer"),
        ([("/p/tfp_realnvp/bijectors/squeeze.py", "Squeeze._transform")], "reshape"),
        ([("/p/tfp_realnvp/bijectors/preprocess.py", "LogitPreprocess._transform")], "loss"),
        ([("/p/tfp_realnvp/model/realnvp.py", "RealNVP.compute_loss")], "loss"),
        ([("/b/benchmarks/plain_keras.py", "PlainRealNVP._scale_inverse")], "reshape"),
        # A class of the same name elsewhere does not count as the batch norm.
        ([("/x/other.py", "BatchNorm.inverse")], "other"),
        ([], "other"),
    ],
)
def test_part_of_stack(stack, part):
    assert hlo_profile.part_of_stack(stack) == part


def test_every_rule_names_a_file_that_exists():
    """A rule whose file moved would attribute nothing; each suffix names a source file."""
    sources = [str(p) for tree in ("tfp_realnvp", "benchmarks") for p in (REPO / tree).rglob("*.py")]
    for prefix, suffix, _ in hlo_profile.RULES:
        if suffix is not None:
            assert any(source.endswith(suffix) for source in sources), (prefix, suffix)


def test_pass_of():
    assert hlo_profile.pass_of("jit(step)/transpose(jvp(model))/conv") == "backward"
    assert hlo_profile.pass_of("jit(step)/jvp(model)/conv") == "forward"
    assert hlo_profile.pass_of("jit(step)/adam/mul") == "update"
    assert hlo_profile.pass_of("") == "unlabelled"


def test_attribution_of_instructions():
    attribution = hlo_profile.Attribution(hlo_text.parse_hlo(HLO))
    assert attribution("custom-call.4") == ("conv", "backward")  # cuDNN convolution
    assert attribution("input_reduce_fusion") == ("batch_norm", "forward")  # via its fused reduce
    assert attribution("copy.1") == ("layout", "unlabelled")
    assert attribution("convert.2") == ("cast", "unlabelled")
    # Two Adam instructions outvote one from the trainer (which matches no rule).
    assert attribution("loop_fusion") == ("optimizer", "update")
    assert attribution("no_such_op") == ("other", "update")


def test_static_counts():
    counts = hlo_profile.static_counts(hlo_text.parse_hlo(HLO))
    assert counts["instructions"] == 5  # parameters are not operations
    assert counts["opcode:fusion"] == 2
    assert counts["part:conv"] == 1 and counts["part:layout"] == 1
    assert counts["converts_anywhere"] == 1 and counts["part:cast"] == 1


def test_program_difference():
    same = hlo_text.program_difference(HLO, HLO.replace("%copy.1", "%copy.7"))
    assert same["differing"] == 0 and same["instructions"][0] == same["instructions"][1] > 10
    other = HLO.replace("%copy.1 = f32[4,8]{0,1} copy(%p0)", "%copy.1 = f32[4,8]{0,1} transpose(%p0), dimensions={0,1}")
    difference = hlo_text.program_difference(HLO, other)
    assert difference["differing"] == 2
    assert difference["only_in_a"] == ["1x copy f32[4,8]{0,1}"]
    assert difference["only_in_b"] == ["1x transpose f32[4,8]{0,1}"]
    signatures = hlo_text.instruction_signatures(HLO)
    assert signatures[("custom-call", "(f32[4,8]{1,0}, u8[0]{0})")] == 1  # a tuple result type


def test_profile_uses_the_device_xla_ops_line():
    module = hlo_text.parse_hlo(HLO)
    profile = hlo_profile.profile_events(_gpu_trace(), module, steps=2)
    assert profile["event_source"] == "device XLA Ops line"
    assert profile["events"] == 8
    assert profile["ops_per_step"] == 4
    parts = {p: v["ms_per_step"] for p, v in profile["parts"].items()}
    assert parts["conv"] == pytest.approx(0.100)
    assert parts["batch_norm"] == pytest.approx(0.050)
    assert parts["layout"] == pytest.approx(0.010)
    assert parts["optimizer"] == pytest.approx(0.040)
    assert profile["op_ms_per_step"] == pytest.approx(0.200)
    assert sum(v["fraction"] for v in profile["parts"].values()) == pytest.approx(1.0)
    assert profile["passes"]["backward"] == pytest.approx(0.100)
    assert profile["top_ops"][0]["op"] == "custom-call.4"
    assert profile["unmatched_ms_per_step"] == 0


def test_profile_reports_operations_missing_from_the_program():
    """A CUDA graph is one event named after no instruction: its time is 'other', and unmatched."""
    events = [_event(2, 1, "command_buffer.3", 700.0)] + _gpu_trace()
    profile = hlo_profile.profile_events(events, hlo_text.parse_hlo(HLO), steps=1)
    assert profile["unmatched_ms_per_step"] == pytest.approx(0.7)
    assert profile["parts"]["other"]["ms_per_step"] == pytest.approx(0.7)


def test_profile_on_a_cpu_uses_host_events(tmp_path):
    events = [
        _event(1, 3, "custom-call.4", 300.0),
        {
            "ph": "X",
            "pid": 1,
            "tid": 3,
            "name": "end: custom-call.4",
            "dur": 1.0,
            "args": {"hlo_op": "custom-call.4", "hlo_module": "jit_train_step"},
        },
        _event(1, 4, "copy.1", 20.0),
    ]
    path = tmp_path / "trace" / "perfetto_trace.json.gz"
    path.parent.mkdir()
    import gzip

    with gzip.open(path, "wt") as handle:
        json.dump({"traceEvents": events}, handle)
    assert hlo_profile.find_trace(tmp_path) == path
    loaded = hlo_profile.load_trace_events(path)
    profile = hlo_profile.profile_events(loaded, hlo_text.parse_hlo(HLO), steps=1)
    assert profile["event_source"] == "host operation events"
    assert profile["events"] == 2  # the "end:" marker is not an operation
    assert profile["parts"]["conv"]["ms_per_step"] == pytest.approx(0.3)


def test_find_trace_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        hlo_profile.find_trace(tmp_path)


def test_format_report_lists_every_part():
    module = hlo_text.parse_hlo(HLO)
    profile = hlo_profile.profile_events(_gpu_trace(), module, steps=2)
    result = {
        "profile": profile,
        "static": hlo_profile.static_counts(module),
        "wall_ms_per_step": 0.25,
        "images_per_s": 1000.0,
    }
    report = {
        "config": "tiny",
        "precision": "float32",
        "batch_size": 4,
        "device": {"devices": ["gpu:0 H200"]},
        "results": {"package": result, "baseline": result},
    }
    report["comparison"] = step_profile.compare(report["results"])
    assert report["comparison"]["wall_ratio"] == pytest.approx(1.0)
    text = step_profile.format_report(report)
    for part in hlo_profile.PARTS:
        assert f"\n{part}" in text
    assert "package/baseline: wall 1.000" in text


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the refusal on other backends")
def test_step_profile_refuses_other_backends(capsys):
    assert step_profile.main(["--config", "tiny", "--batch-size", "2"]) == 2
    assert repr(keras.backend.backend()) in capsys.readouterr().err


# A benchmark tool's whole run (a minute of compiling): with the slow tests; the parsing
# and attribution it is built from are checked above.
@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the profile runs on the JAX backend")
def test_step_profile_end_to_end(tmp_path):
    """mixed_bfloat16, where precision casts could differ between the two programs; with
    the flag that benchmarks/gpu_profile.sh passes."""
    output = tmp_path / "profile.json"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.step_profile",
            "--config",
            "tiny",
            "--batch-size",
            "4",
            "--precision",
            "mixed_bfloat16",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--steps",
            "2",
            "--profile-steps",
            "2",
            "--no-command-buffers",
            "--hlo-dir",
            str(tmp_path / "hlo"),
            "--output",
            str(output),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report["results"]) == {"package", "baseline"}
    assert len(list((tmp_path / "hlo").glob("*.hlo.txt"))) == 2
    for impl, result in report["results"].items():
        profile = result["profile"]
        parts = {p: v["ms_per_step"] for p, v in profile["parts"].items()}
        assert profile["events"] > 0 and profile["op_ms_per_step"] > 0, impl
        assert sum(parts.values()) == pytest.approx(profile["op_ms_per_step"])
        for part in ("conv", "network", "coupling", "batch_norm", "loss", "optimizer"):
            assert parts[part] > 0, (impl, part)
        # Nearly every operation is attributed to a part of the model.
        assert profile["parts"]["other"]["ops_per_step"] <= 0.05 * profile["ops_per_step"], impl
        assert result["static"]["part:conv"] > 0
        assert result["wall_ms_per_step"] > 0
    # The package compiles to the plain-Keras network's program: as many operations, and
    # all but a few instructions alike.
    assert report["comparison"]["ops_per_step_ratio"] == pytest.approx(1.0, abs=0.05)
    difference = report["comparison"]["program_difference"]
    assert difference["differing"] <= 0.01 * min(difference["instructions"]), difference
    assert report["comparison"]["paired_wall_ratio"] > 0
    converts = [report["results"][impl]["static"]["converts_anywhere"] for impl in ("package", "baseline")]
    assert converts[0] == converts[1] > 0
    assert "package/baseline: wall" in proc.stdout
    assert "compiled programs:" in proc.stdout
    # --no-command-buffers, as benchmarks/gpu_profile.sh passes it, reaches XLA's flags.
    assert "--xla_gpu_enable_command_buffer=" in report["xla_flags"]


def _gpu_profile_env(tmp_path, **settings):
    return dict(
        os.environ,
        PYTHON=sys.executable,
        OUT=str(tmp_path / "out"),
        GPU_PROFILE_CONFIG="tiny",
        GPU_CHECK_SKIP_INSTALL="1",
        **settings,
    )


@pytest.mark.backend_independent
def test_gpu_profile_script_skips_what_does_not_fit(tmp_path):
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_profile.sh")],
        env=_gpu_profile_env(tmp_path, GPU_PROFILE_BUDGET_S="0"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("skipped") == 4
    assert "== total" in proc.stdout


# An interpreter for gpu_profile.sh that records each step_profile.py command line (one
# line, tab-separated) and runs nothing.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == "-m" && "$2" == "benchmarks.step_profile" ]]; then
  shift 2
  (IFS=$'\\t'; echo "$*") >> "$COMMANDS"
  exit 0
fi
exit 1
"""


@pytest.mark.backend_independent
def test_gpu_profile_script_runs_step_profile_with_valid_flags(tmp_path):
    """Every run of the script is a command line that step_profile.py's parser accepts,
    with CUDA graphs off; test_step_profile_end_to_end runs such a command on JAX."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    commands = tmp_path / "commands.txt"
    env = _gpu_profile_env(tmp_path, GPU_PROFILE_BUDGET_S="1000", GPU_PROFILE_MIN_RUN_S="1")
    env.update(PYTHON=str(fake), COMMANDS=str(commands))
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_profile.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [step_profile.build_parser().parse_args(line.split("\t")) for line in commands.read_text().splitlines()]
    assert [(r.precision, r.batch_size) for r in runs] == [
        ("float32", 64),
        ("mixed_bfloat16", 256),
        ("float32", 256),
        ("mixed_bfloat16", 64),
    ]
    for r in runs:
        assert r.config == "tiny" and r.no_command_buffers, r
        assert r.output == tmp_path / "out" / f"tiny_{r.precision}_b{r.batch_size}.json", r
        assert r.hlo_dir == tmp_path / "out" / "hlo", r
    assert "== total" in proc.stdout


# The script's real run on a CPU: a heavier variant of test_step_profile_end_to_end (the
# profile, with the script's --no-command-buffers) and of
# test_gpu_profile_script_runs_step_profile_with_valid_flags (the script's commands).
@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the profile runs on the JAX backend")
def test_gpu_profile_script_writes_a_report(tmp_path):
    env = _gpu_profile_env(tmp_path, GPU_PROFILE_RUNS="1", JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_profile.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "tiny_float32_b64.json").read_text())
    assert report["batch_size"] == 64 and "--xla_gpu_enable_command_buffer=" in report["xla_flags"]
    assert set(report["results"]) == {"package", "baseline"}
    assert "compiled programs:" in proc.stdout
