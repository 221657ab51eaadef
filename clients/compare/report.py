"""The report of `percept compare`: report.json (every number), report.md (what a person reads),
plots of each measure over the frames (plots/<input>.png) and the worst-frame gallery."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

REPORT_JSON, REPORT_MD, PLOTS, GALLERY = "report.json", "report.md", "plots", "gallery"


def clear_report(out: Path) -> None:
    """Remove what an earlier compare wrote into ``out`` (not the Ray runs under ``runs/``)."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for name in (REPORT_JSON, REPORT_MD):
        (out / name).unlink(missing_ok=True)
    for folder in (PLOTS, GALLERY):
        shutil.rmtree(out / folder, ignore_errors=True)


def write_report(report, out: Path, gallery: dict, plots: bool = True) -> None:
    data = report.to_dict()
    data["gallery"] = gallery
    data["plots"] = _plots(report.inputs, out / PLOTS, report.bounds.seg_agreement) if plots else {}
    (out / REPORT_JSON).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (out / REPORT_MD).write_text(markdown(data))


def _pct(v: float, of: int = 1) -> str:
    return f"{v * 100:.2f}%" if of else "-"


def markdown(data: dict) -> str:
    b = data["bounds"]
    lines = [
        "# percept compare",
        "",
        f"**{data['line']}**",
        "",
        f"- baseline: `{data['baseline']}`",
        f"- candidate: `{data['candidate']}`",
        f"- bounds: the `{b['row']}` row"
        + "".join(f", {k} {v:g}" for k, v in sorted(b.items()) if k != "row"),
        "",
    ]
    if data["failures"]:
        lines += ["## Failures", "", *[f"- {f}" for f in data["failures"]], ""]
    for name, inp in data["inputs"].items():
        lines += [f"## {name}", "", f"{inp['frames']} frames compared"]
        if inp["undecodable"]:
            lines.append(
                f"; {len(inp['undecodable'])} undecodable frame(s) not compared: {inp['undecodable'][:20]}"
            )
        lines.append("")
        if "detection" in inp:
            lines += _detection(inp["detection"])
        if "segmentation" in inp:
            lines += _segmentation(inp["segmentation"])
        if "depth" in inp:
            lines += _depth(inp["depth"])
        if "metrics" in inp:
            lines += _metrics(inp["metrics"])
        if name in data["plots"]:
            lines += [f"![measures over the frames]({data['plots'][name]})", ""]
    if data["serving"]:
        lines += [
            "## Serving",
            "",
            "| side | p50 ms | p90 ms | p99 ms | frames/s (one at a time) |",
            "|---|---|---|---|---|",
        ]
        for side, s in data["serving"].items():
            lines.append(
                f"| {side} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} "
                f"| {s['frames_per_s']:.1f} |"
            )
        lines.append("")
    if data["gallery"]:
        lines += [
            "## Worst frames",
            "",
            "baseline | candidate, below: differences (magenta: changed pixels, "
            "red: baseline box missing, yellow: extra candidate box)",
            "",
        ]
        for head, shots in data["gallery"].items():
            lines += [f"### {head}", ""]
            lines += [
                f"- {s['input']} frame {s['frame']} ({s['value']:.4g}): ![]({s['path']})" for s in shots
            ]
            lines.append("")
    return "\n".join(lines) + "\n"


def _detection(d: dict) -> list[str]:
    out = [
        "### detection",
        "",
        f"{d['matched']} matched of {d['baseline']} baseline / {d['candidate']} candidate detections",
        "",
        "| class | baseline | candidate | matched | missing | extra | borderline | unmatched fraction |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cls, c in d["per_class"].items():
        out.append(
            f"| {cls} | {c['baseline']} | {c['candidate']} | {_pct(c['matched_rate'], c['baseline'])} "
            f"| {_pct(c['missing_rate'], c['baseline'])} "
            f"| {_pct(c['extra_rate'], c['candidate'])} | {c['borderline']} | {c['unmatched_fraction']:.4f} |"
        )
    if d["iou"]:
        iou, diff = d["iou"], d["abs_score_diff"]
        out += [
            "",
            f"matched pairs: IoU min {iou['min']:.4f}, p5 {iou['p5']:.4f}, median {iou['p50']:.4f}; "
            f"|score diff| median {diff['p50']:.2e}, p95 {diff['p95']:.2e}, max {diff['max']:.2e} "
            f"(mean signed {d['mean_score_diff']:+.2e})",
        ]
    return [*out, ""]


def _segmentation(s: dict) -> list[str]:
    out = [
        "### segmentation",
        "",
        f"pixel agreement {_pct(s['pixel_agreement'])}, worst frame {s['worst_frame']}: "
        f"{_pct(s['worst_frame_agreement'])}",
        "",
        "| class | IoU (candidate vs baseline) |",
        "|---|---|",
    ]
    out += [f"| {cls} | {v:.4f} |" for cls, v in s["class_iou"].items()]
    return [*out, ""]


def _depth(d: dict) -> list[str]:
    out = ["### depth", "", "| pixels | p50 | p90 | p99 | max | count |", "|---|---|---|---|---|---|"]
    for label, r in (("all valid", d["rel_error"]), (f"near (<= {d['near']['max_m']:g} m)", d["near"])):
        out.append(
            f"| {label} | {r['p50']:.2e} | {r['p90']:.2e} | {r['p99']:.2e} | {r['max']:.2e} | {r['pixels']} |"
        )
    return [*out, "", "relative error |candidate - baseline| / baseline over valid baseline pixels", ""]


def _metrics(m: dict) -> list[str]:
    out = ["### against ground truth", "", "| metric | baseline | candidate | delta |", "|---|---|---|---|"]
    for key, d in m["delta"].items():
        out.append(f"| {key} | {m['baseline'][key]:.4f} | {m['candidate'][key]:.4f} | {d:+.4f} |")
    return [*out, ""]


def _plots(inputs: dict, folder: Path, seg_bound: float) -> dict[str, str]:
    """One figure per input: each measure over the frames, with the gate's per-frame bound where it
    has one (segmentation: the worst frame's agreement); {} without matplotlib (logged)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install 'perception-serving[client]')")
        return {}
    out = {}
    for name, inp in inputs.items():
        series = inp["series"]
        x = [f["index"] for f in series]
        measures: list[tuple[str, list, float | None]] = []
        if "detection" in inp:
            measures.append(("unmatched detections", [f["det_unmatched"] for f in series], None))
        if "segmentation" in inp:
            measures.append(("seg pixel agreement", [f["seg_agreement"] for f in series], seg_bound))
        if "depth" in inp:
            measures.append(("depth p90 rel. error", [f["depth_p90"] for f in series], None))
        fig, axes = plt.subplots(
            len(measures), 1, figsize=(8, 2.2 * len(measures)), sharex=True, squeeze=False
        )
        for ax, (label, y, bound) in zip(axes[:, 0], measures, strict=True):
            ax.plot(x, y, lw=1)
            if bound is not None:
                ax.axhline(bound, color="red", ls="--", lw=1, label=f"gate bound {bound:g}")
                ax.legend(fontsize=7, loc="lower right")
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("frame")
        fig.suptitle(name, fontsize=9)
        fig.tight_layout()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        out[name] = f"{PLOTS}/{name}.png"
    return out
