#!/usr/bin/env python3
r"""
The learned fuser's per-frame network step: torch (as shipped) against ONNX Runtime, on CPU.

    python3 -m venv /tmp/ortvenv
    /tmp/ortvenv/bin/pip install torch==2.13.0 onnx onnxruntime numpy opencv-python-headless
    /tmp/ortvenv/bin/python scripts/compare_runtimes.py --sizes 640x480,320x240 \
        --frames 60 --threads 2 [--json output/compare_runtimes.json] [--profile]

onnx and onnxruntime are *not* project dependencies: install them into a venv of their
own, as above, with torch pinned to the project's (the script puts the repository on
sys.path).

What runs
---------
* **torch**: ``learned.runtime.FrozenStep``, the TorchScript-frozen trace of
  ``_restore(model, ir, vis, MemoryState(*state), ...)``, the very object that
  ``fusers.learned.LearnedFuser`` (CPU, jit) steps its stream with, called as it calls it.
* **ONNX Runtime**: the same step, ``FrozenStep._Wrapped`` with the memory as explicit
  inputs and outputs, exported by ``torch.onnx.export`` at a fixed size, one graph per step
  mode the stream ran (``estimate`` and ``every``, and whatever else the runner's mode
  holds), run by the CPUExecutionProvider with ``intra_op_num_threads`` equal to torch's
  thread count.  The TorchScript exporter (``dynamo=False``) is tried first; neither it
  nor the dynamo exporter converts ``aten::median.dim`` (``column_offsets``,
  ``noise_level``), so on that failure the script registers a symbolic for it (TopK of the
  smallest half, its last value: torch's lower median) and exports again; the dynamo
  exporter (it needs onnxscript too) is the last resort.  ``export_attempts`` in the JSON
records what was tried.

The streams
-----------
A ``LearnedFuser(device="cpu", jit=True, bf16=False)`` fuses frames of
``data.synthetic.SyntheticScene(width, height)`` as the node would (IR = thermal / 255,
VIS = the Y of ``cv2.COLOR_BGR2YCrCb`` / 255; dense estimates for 64 frames, then every
4th): ``--warmup`` frames for a realistic memory, then ``--frames`` more while each network
step's inputs, memory, mode and torch output are recorded (so 3 of 4 recorded steps are
``estimate=False``, as in a live stream).  ``--streams``: ``clean`` is the synthetic
frames as they are, ``degraded`` the same through ``data.degradation.VideoDegradation``
(IR noise and column stripes, visible blur: what the restorations are for).  A runner
that skips the restorations that are the identity on a frame (a clean camera) runs cheap
steps on ``clean``; the recorded modes say which steps ran.  Only the network step is
timed: not the conversions, the multi-scale fusion or the runner's work around it.

Timing and checks
-----------------
Both runtimes replay the recorded steps (the same inputs and memory: torch tensors for
torch, the same values as numpy arrays for ONNX Runtime), each call timed on its own, in
blocks of ``--block`` steps that alternate between the runtimes (a load spike on this
shared machine hits both).  The table gives the median over the stream's steps in ms and
fps, at ``--threads`` threads and at 1, and ORT/torch (> 1: ONNX Runtime is slower).
Max diff: the largest |ORT - torch| of the restored pair over all replayed steps, in grey
levels (x255); it should be within 1.  ``free-running``: the same, with ONNX Runtime
carrying its own memory over the recorded frames from the same start.  ``--profile`` adds
each runtime's top operators at the stream's commonest step (their own profilers).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import contextlib
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from thermal_visible_fusion.data.degradation import VideoDegradation  # noqa: E402
from thermal_visible_fusion.data.synthetic import SyntheticScene  # noqa: E402
from thermal_visible_fusion.fusers.learned import ESTIMATE_EVERY, LearnedFuser  # noqa: E402
from thermal_visible_fusion.learned.model import MemoryState  # noqa: E402
from thermal_visible_fusion.learned.runtime import FrozenStep, FULL, Mode  # noqa: E402

INPUTS = ["ir", "vis", "noise"] + [f"memory_{name}" for name in MemoryState._fields]
OUTPUTS = ["restored"] + [f"new_{name}" for name in MemoryState._fields]
OPSET = 17
STREAMS = ("clean", "degraded")
DEGRADATION_SCENE = "synthetic"  # its seed-0 draws: IR noise 9.3, stripes 5.7, blur 2.2 px
EXPORT_LOG: list[dict] = []  # every export attempt, for the JSON
_MEDIAN_REGISTERED = False  # the TopK symbolic for aten::median (export_step)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1 (the TorchScript exporter prints graphs from C++)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _import_ort():
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
    except ImportError as exc:
        sys.exit(f"{exc}: this script needs onnx and onnxruntime, which the project does not "
                 "install; see the module docstring")
    return onnxruntime


# --------------------------------------------------------------------------- the stream

class Recorder:
    """A ``StreamingRunner`` step: runs the fuser's own step, records calls while ``on``."""

    def __init__(self, step: FrozenStep):
        self.step, self.on, self.calls = step, False, []

    def __call__(self, ir, vis, state, mode: Mode = FULL, noise=None):
        # noise: the IR noise the runner measured to decide the mode (the step's input)
        restored, new = self.step(ir, vis, state, mode, noise)
        if self.on:
            self.calls.append({"ir": ir, "vis": vis, "state": state, "mode": mode,
                               "noise": noise, "restored": restored})
        return restored, new


def step_args(call: dict) -> tuple:
    """Return the recorded call's arguments, as the runner passed them to the step."""
    return call["ir"], call["vis"], call["state"], call["mode"], call["noise"]


def mode_fields(mode: Mode) -> dict:
    return dict(mode._asdict())


def mode_label(mode: Mode) -> str:
    return ",".join(f"{name}={int(value)}" for name, value in mode_fields(mode).items())


def record_stream(fuser: LearnedFuser, width: int, height: int, degraded: bool, warmup: int,
                  frames: int) -> list[dict]:
    """Fuse warmup + frames synthetic frames as the node would; return the last steps."""
    scene = SyntheticScene(width, height)
    degradation = VideoDegradation(DEGRADATION_SCENE) if degraded else None
    recorder = Recorder(fuser.runner.step)
    fuser.reset()
    fuser.runner.step = recorder
    try:
        for index in range(warmup + frames):
            recorder.on = index >= warmup
            thermal, rgb = scene.frame(index)
            if degradation is not None:
                thermal, rgb = degradation.apply(thermal, rgb, index)
            fuser.fuse(thermal, rgb)
    finally:
        fuser.runner.step = recorder.step
    if not all(call["state"] is not None and call["noise"] is not None
               and mode_fields(call["mode"]).get("every") == ESTIMATE_EVERY
               for call in recorder.calls):
        sys.exit(f"--warmup {warmup}: the recorded steps are not all of the steady schedule")
    return recorder.calls


# --------------------------------------------------------------------------- export

def _median_symbolic(g, x, dim, keepdim):
    """``aten::median.dim`` for the TorchScript exporter: torch's lower median via TopK."""
    dim = dim % torch.onnx.symbolic_helper._get_tensor_rank(x)
    axis = g.op("Constant", value_t=torch.tensor([dim]))
    one = g.op("Constant", value_t=torch.tensor([1]))
    size = g.op("Gather", g.op("Shape", x), axis)
    k = g.op("Div", g.op("Add", size, one), g.op("Constant", value_t=torch.tensor([2])))
    values, indices = g.op("TopK", x, k, axis_i=dim, largest_i=0, sorted_i=1, outputs=2)
    last = g.op("Sub", k, one)
    values, indices = (g.op("Slice", t, last, k, axis) for t in (values, indices))
    if not keepdim:
        values, indices = (g.op("Squeeze", t, axis) for t in (values, indices))
    return values, indices


def export_step(model, call: dict, path: Path) -> str:
    """Export the step of ``call`` (memory in, memory out) to ``path``; return the method."""
    global _MEDIAN_REGISTERED
    wrapped = FrozenStep._Wrapped(model, call["mode"], True, True).eval()
    inputs = (call["ir"], call["vis"], call["noise"]) + tuple(call["state"])
    methods = ["torchscript+median-symbolic", "dynamo"]
    if not _MEDIAN_REGISTERED:
        methods.insert(0, "torchscript")
    for method in methods:
        if method == "torchscript+median-symbolic" and not _MEDIAN_REGISTERED:
            parse = torch.onnx.symbolic_helper.parse_args("v", "i", "i")
            torch.onnx.register_custom_op_symbolic("aten::median", parse(_median_symbolic),
                                                   OPSET)
            _MEDIAN_REGISTERED = True
        start = time.perf_counter()
        try:
            # the TorchScript exporter prints the whole graph when an operator fails
            with warnings.catch_warnings(), torch.no_grad(), _quiet_stdout():
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapped, inputs, str(path), input_names=INPUTS,
                                  output_names=OUTPUTS, opset_version=OPSET,
                                  dynamo=method == "dynamo")
        except Exception as exc:  # record it and try the next way
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            EXPORT_LOG.append({"method": method, "ok": False, "file": path.name,
                               "error": f"{type(exc).__name__}: {first}"})
            continue
        EXPORT_LOG.append({"method": method, "ok": True, "file": path.name,
                           "seconds": round(time.perf_counter() - start, 2)})
        return method
    sys.exit(f"every export of {path.name} failed: {EXPORT_LOG}")


# --------------------------------------------------------------------------- runtimes

def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.numpy(), dtype=np.float32)


def ort_feed(call: dict, names: list[str]) -> dict:
    """Return the call's inputs by name that the graph has (unused ones are exported away)."""
    tensors = (call["ir"], call["vis"], call["noise"]) + tuple(call["state"])
    return {name: _numpy(t) for name, t in zip(INPUTS, tensors) if name in names}


def ort_session(ort, path: Path, threads: int, profile: str | None = None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_runtimes(calls, feeds, torch_step, sessions, block: int) -> tuple[dict, float]:
    """Each call's ms per runtime, interleaved in blocks; and the max |ORT - torch| in levels."""
    times: dict[str, list[float]] = {"torch": [], "ort": []}
    worst = 0.0

    def run_torch(i: int) -> None:
        with torch.inference_mode():
            torch_step(*step_args(calls[i]))

    def run_ort(i: int) -> None:
        nonlocal worst
        restored = sessions[calls[i]["mode"]].run(OUTPUTS[:1], feeds[i])[0]
        worst = max(worst, float(np.abs(restored - calls[i]["restored"].numpy()).max()))

    runners = {"torch": run_torch, "ort": run_ort}
    for i in range(min(ESTIMATE_EVERY, len(calls))):  # first calls: allocations, arenas
        run_torch(i)
        run_ort(i)
    for start in range(0, len(calls), block):
        order = ("torch", "ort") if start // block % 2 == 0 else ("ort", "torch")
        for name in order:
            for i in range(start, min(start + block, len(calls))):
                begin = time.perf_counter()
                runners[name](i)
                times[name].append(1000 * (time.perf_counter() - begin))
    return times, 255 * worst


def free_running_diff(calls, sessions) -> float:
    """Max |ORT - torch| in levels when ORT carries its own memory from the same start."""
    memory, worst = ort_feed(calls[0], INPUTS), 0.0
    for call in calls:
        for name in ("ir", "vis", "noise"):  # this frame's; the memory is ORT's own
            memory[name] = _numpy(call[name])
        session = sessions[call["mode"]]
        names = [node.name for node in session.get_inputs()]
        restored, *new = session.run(OUTPUTS, {k: memory[k] for k in names})
        worst = max(worst, float(np.abs(restored - call["restored"].numpy()).max()))
        memory.update(zip(INPUTS[3:], new))
    return 255 * worst


def summary(times_ms: list[float], calls) -> dict:
    """Median (the table's figure), mean, the median of each step mode, and every time."""
    by_mode: dict[str, list[float]] = defaultdict(list)
    for ms, call in zip(times_ms, calls):
        by_mode[mode_label(call["mode"])].append(ms)
    median = statistics.median(times_ms)
    return {"median_ms": round(median, 2), "fps": round(1000 / median, 1),
            "mean_ms": round(statistics.fmean(times_ms), 2),
            "median_ms_by_mode": {k: round(statistics.median(v), 2) for k, v in by_mode.items()},
            "times_ms": [round(ms, 3) for ms in times_ms]}


# --------------------------------------------------------------------------- profiles

def profile_ort(ort, path: Path, feeds, threads: int, workdir: Path) -> list[tuple[str, float]]:
    """Return the ms per step of each ONNX operator type (kernel time), highest first."""
    session = ort_session(ort, path, threads, profile=str(workdir / "ort_profile"))
    for feed in feeds:
        session.run(OUTPUTS, feed)
    trace = json.loads(Path(session.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"]["op_name"]] += event["dur"] / 1000
    return sorted(((op, ms / len(feeds)) for op, ms in total.items()), key=lambda x: -x[1])


def profile_torch(torch_step, calls) -> list[tuple[str, float]]:
    """Return the ms per step of each aten operator (self time), highest first."""
    rows: dict[str, float] = {}
    for profiled in (calls[:2], calls):  # the first profile carries the profiler's start-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            with torch.inference_mode():
                for call in profiled:
                    torch_step(*step_args(call))
        rows = {e.key: e.self_cpu_time_total / 1000 / len(profiled)
                for e in prof.key_averages()}
    return sorted(rows.items(), key=lambda x: -x[1])


# --------------------------------------------------------------------------- report

def table(result: dict, sizes: list[str], counts: list[int]) -> str:
    """Markdown: each stream's runtimes and thread counts, a column per size."""
    head = ["stream", "runtime", "threads"] + [f"{s} ms (fps)" for s in sizes] + \
        ["max diff (grey levels)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stream, entries in result["streams"].items():
        worst = max(entries[s]["max_diff_grey"] for s in sizes)
        for threads in counts:
            per = [entries[s]["threads"][str(threads)] for s in sizes]
            for name, label in (("torch", "torch FrozenStep"), ("ort", "ONNX Runtime")):
                cells = [f"{p[name]['median_ms']:.2f} ({p[name]['fps']:.0f})" for p in per]
                diff = "reference" if name == "torch" else f"{worst:.1e}"
                lines.append(f"| {stream} | {label} | {threads} | " + " | ".join(cells)
                             + f" | {diff} |")
            ratios = [f"x{p['ort_over_torch']:.2f}" for p in per]
            lines.append(f"| {stream} | ORT/torch | {threads} | " + " | ".join(ratios) + " | |")
    return "\n".join(lines)


def _tree_state() -> dict:
    """Return the commit and the package's files changed since (what the timed step is)."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *argv], capture_output=True,
                                  text=True, timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "modified": git("status", "--porcelain", "--", "thermal_visible_fusion").splitlines()}


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def compare(ort, fuser: LearnedFuser, stream: str, size: str, args, counts: list[int],
            workdir: Path) -> dict:
    """Record a stream of this size, export its steps, time and check both runtimes."""
    width, height = parse_size(size)
    print(f"{stream} {size}: fusing {args.warmup}+{args.frames} frames ...", file=sys.stderr)
    torch.set_num_threads(counts[0])
    calls = record_stream(fuser, width, height, stream == "degraded", args.warmup,
                          args.frames)
    modes = list(dict.fromkeys(call["mode"] for call in calls))  # in stream order
    paths, methods = {}, {}
    for number, mode in enumerate(modes):
        paths[mode] = workdir / f"step_{stream}_{size}_{number}.onnx"
        call = next(c for c in calls if c["mode"] == mode)
        methods[mode_label(mode)] = export_step(fuser.model, call, paths[mode])
    names = {mode: [node.name for node in ort_session(ort, path, 1).get_inputs()]
             for mode, path in paths.items()}
    feeds = [ort_feed(call, names[call["mode"]]) for call in calls]
    entry = {"export": methods, "threads": {}, "max_diff_grey": 0.0,
             "steps_by_mode": {mode_label(m): sum(c["mode"] == m for c in calls)
                               for m in modes}}
    for threads in counts:
        print(f"{stream} {size}: timing at {threads} thread(s) ...", file=sys.stderr)
        torch.set_num_threads(threads)
        sessions = {mode: ort_session(ort, path, threads) for mode, path in paths.items()}
        times, diff = time_runtimes(calls, feeds, fuser.runner.step, sessions, args.block)
        per = {name: summary(ms, calls) for name, ms in times.items()}
        per["ort_over_torch"] = round(per["ort"]["median_ms"] / per["torch"]["median_ms"], 3)
        entry["threads"][str(threads)] = per
        entry["max_diff_grey"] = max(entry["max_diff_grey"], diff)
        if threads == counts[0]:
            entry["free_running_max_diff_grey"] = free_running_diff(calls, sessions)
    if args.profile:  # at the stream's commonest step
        torch.set_num_threads(counts[0])
        common = max(modes, key=lambda m: entry["steps_by_mode"][mode_label(m)])
        chosen = [i for i, c in enumerate(calls) if c["mode"] == common]
        entry["profile_ms_per_step"] = {
            "mode": mode_label(common), "threads": counts[0],
            "ort": profile_ort(ort, paths[common], [feeds[i] for i in chosen], counts[0],
                               workdir)[:12],
            "torch": profile_torch(fuser.runner.step, [calls[i] for i in chosen])[:12]}
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="640x480,320x240", help="WxH,WxH,...")
    parser.add_argument("--frames", type=int, default=60, help="timed steps per runtime")
    parser.add_argument("--threads", type=int, default=2, help="threads (1 is also run)")
    parser.add_argument("--warmup", type=int, default=68, help="stream frames before timing")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    parser.add_argument("--json", type=Path,
                        default=REPO_ROOT / "output" / "compare_runtimes.json")
    parser.add_argument("--streams", default=",".join(STREAMS),
                        help="clean: the synthetic frames; degraded: with IR noise, stripes "
                        "and visible blur (data.degradation), which the restorations act on")
    parser.add_argument("--profile", action="store_true", help="top operators of each runtime")
    args = parser.parse_args(argv)
    ort = _import_ort()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    if not set(streams) <= set(STREAMS):
        parser.error(f"--streams: {STREAMS} only")
    counts = sorted({args.threads, 1}, reverse=True)
    # float32 throughout: the same graph in both runtimes (ONNX Runtime's CPU provider has
    # no bfloat16 convolutions), not the bfloat16 convolutions a CPU with them ships with
    fuser = LearnedFuser(device="cpu", threads=counts[0], jit=True, bf16=False)
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version(), "torch": torch.__version__,
                          "onnxruntime": ort.__version__, "opset": OPSET},
              "tree": _tree_state(), "args": {k: str(v) for k, v in vars(args).items()},
              "degradation": VideoDegradation(DEGRADATION_SCENE).parameters(),
              "streams": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for stream in streams:
            result["streams"][stream] = {
                size: compare(ort, fuser, stream, size, args, counts, Path(tmp))
                for size in sizes}
    result["export_attempts"] = EXPORT_LOG

    print(table(result, sizes, counts))
    print()
    for stream, entries in result["streams"].items():
        for size, entry in entries.items():
            print(f"{stream} {size}: max diff {entry['max_diff_grey']:.1e} grey levels on the "
                  f"same inputs and memory, {entry['free_running_max_diff_grey']:.1e} "
                  f"free-running; steps {entry['steps_by_mode']}; "
                  f"export {sorted(set(entry['export'].values()))}")
    for stream, entries in result["streams"].items():
        for size, entry in entries.items():
            prof = entry.get("profile_ms_per_step")
            if prof:
                print(f"\nTop operators, {stream} {size}, step {prof['mode']}, "
                      f"{prof['threads']} thread(s), ms/step:")
                for (ort_op, ort_ms), (aten_op, aten_ms) in zip(prof["ort"], prof["torch"]):
                    print(f"  ORT {ort_op:<22} {ort_ms:6.2f}    "
                          f"torch {aten_op:<28} {aten_ms:6.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
