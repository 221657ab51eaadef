"""BENCHMARKS.md from a run's results: every machine and server fact in it was measured or read."""

from __future__ import annotations

import datetime as _dt

from clients.loadtest import LoadTestResult
from percept.bench.breakdown import overhead_markdown
from percept.bench.facts import MachineFacts, versions
from percept.bench.figures import Figure, avg_batch
from percept.bench.history import spread
from percept.bench.measure import MATMUL_SIZES
from percept.bench.networks import FUSED
from percept.bench.plan import BATCHING_CONCURRENCY as C
from percept.bench.plan import COMMAND, STREAMS_FPS, STREAMS_SLO_P99_MS, VIDEO_REPEATS
from percept.bench.precision import markdown as precision_markdown
from percept.bench.results import Bench
from percept.bench.served import LOAD_WORKERS

NOT_READ = "(not read)"


def markdown(bench: Bench) -> str:
    m0, m1 = bench.machine_start, bench.machine_end
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{COMMAND}` on {now}; the whole run took {bench.seconds.get('total', 0.0):.0f} s.",
        "Every figure is a ratio of two numbers measured in this one run on this one machine. Absolute",
        f"numbers on a shared {_cores(m0)}-core machine move a lot from run to run; ratios move less, but",
        "they still move (last column), so read a goal as met or missed for this run, not for all time.",
        "",
        *_machine(m0, m1),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in _versions(bench).items()) + ".",
        "",
        "| # | figure | numerator | denominator | ratio | goal | met | earlier runs here |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fig in bench.figures:
        lines.append("| " + " | ".join([*_cells(fig), spread(bench.history, fig.key)]) + " |")
    lines += [
        "",
        f"Earlier runs here: min-max of each ratio over the {len(bench.history)} earlier `make bench` runs",
        "recorded in `artifacts/bench/history.jsonl` on this machine (any code version), to show how much",
        "a ratio moves from run to run on a shared host.",
        "",
        "Notes:",
        "",
    ]
    lines += [f"- ({fig.key}) {fig.note}" for fig in bench.figures if fig.note]
    lines += _method_notes(bench)
    if bench.errors:
        lines += ["", "Stages that failed in this run:", ""]
        lines += [f"- {k}: {v}" for k, v in bench.errors.items()]
    lines += overhead_markdown(bench.overhead)
    lines += precision_markdown(bench.precision, FUSED)
    lines += ["", "## Concurrency sweeps (load-test harness)", ""]
    keys = ("raw", "single_task", "batching_on", "no_batching", "ensemble")
    results = [bench.sweeps[k] for k in keys if k in bench.sweeps]
    if results:
        lines += [
            "`cam_n` (dynamic batching) and the single-task trio, their steps alternated; then `cam_n`",
            f"with batching on and off alternated at concurrency {C}; then the `perception` ensemble:",
            "",
            sweep_table(*results),
        ]
    if bench.streams:
        lines += [
            "",
            "## Camera streams (capacity search)",
            "",
            f"Each step: that many camera streams at {STREAMS_FPS:g} fps, open loop, latency (ms) from",
            f"each frame's scheduled send; held: p99 <= {STREAMS_SLO_P99_MS:g} ms, none failed or dropped.",
            "",
            streams_table(bench),
        ]
    lines += ["", "## In-process", "", *_in_process(bench)]
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in bench.seconds.items()) + ".", ""]
    return "\n".join(lines)


def _cores(machine: MachineFacts | None) -> str:
    return str(machine.cores) if machine else "?"


def _hw(bench: Bench) -> str:
    return f"{bench.input_hw[0]}x{bench.input_hw[1]}" if bench.input_hw else "?"


def _machine(m0: MachineFacts | None, m1: MachineFacts | None) -> list[str]:
    if m0 is None:
        return [f"Machine: {NOT_READ}."]
    end = f"{m1.load_avg_1m:.2f}" if m1 else "?"
    busy = (
        " (other jobs were running on this machine)"
        if max(m0.load_avg_1m, m1.load_avg_1m if m1 else 0) >= 0.5
        else ""
    )
    return [
        f"Machine: {m0.describe()}; load average {m0.load_avg_1m:.2f} at the",
        f"start and {end} at the end{busy}.",
    ]


def _versions(bench: Bench) -> dict[str, str]:
    out = versions()
    if bench.server is None:
        out["tritonserver"] = NOT_READ
    else:
        engine = f", {bench.served.engine_words}" if bench.served else ""
        out["tritonserver"] = f"{bench.server.version} ({bench.server.binary}{engine})"
    return out


def _method_notes(bench: Bench) -> list[str]:
    machine, served = bench.machine_start, bench.served
    gpu = machine.gpu if machine else None
    why = f"the bench measures the CPU path only ({gpu} present)" if gpu else "this machine has no GPU"
    ort = served.ort.describe() if served else NOT_READ
    defaults = (
        f"{served.instances} network instances, dynamic batching {'on' if served.dynamic_batching else 'off'}"
        if served
        else NOT_READ
    )
    sizes = ", ".join(str(n) for n in MATMUL_SIZES)
    lines = [
        f"- GPU rows (torch CUDA FP16 for 4 and 7) were not run: {why}.",
        "- (1), (2): the in-process side uses ONNX Runtime configured like the served network model",
        f"  ({ort}; read from its config.pbtxt; CPU provider)",
        "  on the same model.onnx and the same letterboxed frames, run while the server idles: batch-1",
        "  latency alternated with the served concurrency-1 steps, throughput per batch before and after",
        "  the served sweep (the better of the two). The served side is the raw network model `cam_n`",
        f"  over gRPC from the load-test harness ({LOAD_WORKERS} worker processes)",
        f"  on the same {_cores(machine)} cores, with the repository's defaults ({defaults}).",
        "- (7): FLOPs counted by PyTorch's FlopCounterMode (2 per multiply-add) on one frame; the",
        f"  matmul peak is the fastest single numpy or PyTorch fp32 matmul (n = {sizes}) seen at",
        "  the start and after the sweep. On a shared host neither side is clean: a ratio above 1 means",
        "  the matmul never caught a quiet moment that the network run did.",
        "- (4): one unit = a frame sent to cam_n_det, cam_n_seg and cam_n_depth in turn (one slot of",
        "  the units in flight), against cam_n carrying all three heads.",
        "- (5): `percept video --raw --model cam_n` (decode, client letterbox, raw network,",
        "  client postprocess, annotated MP4, JSONL) with its default window of requests in flight, over a",
        f"  {bench.video_frames or '?'}-frame drive (world scenes repeated {VIDEO_REPEATS} times); the",
        "  same drive through the `perception` ensemble in the note. The ceiling: clients.stagecpu's CPU",
        "  per frame of the run against the server's per frame at the model-only peak",
        "  (percept/bench/video_figure.py).",
        "- (12): that drive twice (two inputs), `percept video` as a user runs it, --engine local",
        "  (both inputs at once in one process) then --engine ray (a local Ray runtime started by the",
        "  command, worker actors each with its own gRPC channel, annotated MP4s joined at the end);",
        "  frames/s from each run's run.json, the Ray run's start-up and steady state from its timing.",
        "- Weights: shipped checkpoints where present, else seeded random init (timing depends on the",
        "  weights only through the number of boxes NMS keeps); this run: "
        + ", ".join(f"{k} {v}" for k, v in bench.weights.items())
        + ".",
    ]
    if bench.wire is not None:
        raw = ", ".join(f"{k} {v / 1e3:.0f} kB" for k, v in bench.wire.raw_fp32.items())
        lines += [
            f"- (6): the response protobuf of one {_hw(bench)} world frame (boxes, uint8 class map, FP16",
            f"  depth) against the FP32 raw heads the spec's shapes imply ({raw}); the raw network's own",
            f"  response is {bench.wire.raw_network / 1e3:.0f} kB.",
        ]
    return lines


def _in_process(bench: Bench) -> list[str]:
    lines = []
    if bench.ort is not None:
        lines.append("ONNX Runtime frames/s by batch: " + bench.ort.describe() + ".")
    if bench.torch is not None:
        lines.append("PyTorch eager frames/s by batch: " + bench.torch.throughput.describe() + ".")
    if bench.gflops_per_frame is not None:
        lines.append(f"Model: {bench.gflops_per_frame:.2f} GFLOP per {FUSED} {_hw(bench)} frame.")
    if bench.matmul is not None:
        mm = bench.matmul
        lines.append(f"Matmul peak: {mm.gflops:.1f} GFLOP/s ({mm.library}, n={mm.n}, fp32).")
    return lines


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _cells(fig: Figure) -> list[str]:
    num, den = fig.numerator, fig.denominator
    if fig.ratio != fig.ratio:  # NaN: not measured
        return [fig.key, fig.title, "-", "-", "-", fig.goal or "-", "not measured"]
    met = {True: "yes", False: "**no**", None: "-"}[fig.met]
    return [
        fig.key,
        fig.title,
        f"{num[0]}: {_fmt(num[1])} {num[2]}",
        f"{den[0]}: {_fmt(den[1])} {den[2]}",
        f"{fig.ratio:.2f}",
        fig.goal or "-",
        met,
    ]


SWEEP_COLUMNS = (
    "models",
    "concurrency",
    "frames/s",
    "p50 ms",
    "p99 ms",
    "avg batch",
    "queue ms",
    "infer ms",
    "errors",
    "stable",
)


def sweep_table(*results: LoadTestResult) -> str:
    rows = ["| " + " | ".join(SWEEP_COLUMNS) + " |", "|" + "---|" * len(SWEEP_COLUMNS)]
    for result in results:
        for s in result.steps:
            split = s.network_split()
            cells = [
                "+".join(result.models),
                str(s.concurrency),
                f"{s.throughput:.1f}",
                f"{s.latency.p50:.1f}",
                f"{s.latency.p99:.1f}",
                f"{avg_batch(s):.2f}",
                f"{split.queue_ms if split else 0:.1f}",
                f"{split.compute_infer_ms if split else 0:.1f}",
                str(s.error_count),
                "yes" if s.stable else "no",
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


STREAMS_COLUMNS = (
    "model",
    "streams",
    "frames/s",
    "sent",
    "late",
    "dropped",
    "p50",
    "p99",
    "p99.9",
    "cpu/req",
    "held",
)


def streams_table(bench: Bench) -> str:
    rows = ["| " + " | ".join(STREAMS_COLUMNS) + " |", "|" + "---|" * len(STREAMS_COLUMNS)]
    for found in bench.streams.values():
        for step in found.result.steps:
            s = step.streams
            if s is None:
                continue
            cells = [
                found.model,
                str(s.streams),
                f"{step.throughput:.1f}",
                str(s.sent),
                str(s.late),
                str(s.dropped),
                f"{s.latency.p50:.1f}",
                f"{s.latency.p99:.1f}",
                f"{s.latency.p99_9:.1f}",
                f"{step.harness_cpu_ms_per_request:.2f}",
                "yes" if step.held(found.capacity.slo_p99_ms) else "no",
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
