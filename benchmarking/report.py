"""The benchmark report: JSON on disk, readable tables, comparisons of two reports, a plot.

A report is one JSON object::

    {"schema_version": 1, "kind": "training+inference" | "training" | "inference" | "loaders"
     | "detection-loaders" | "mask-rcnn-loaders" | "mask-rcnn-peer", "created", "command",
     "model", "task", "dtype", "device", "machine": {...}, "settings": {...},
     "results": [row, ...], "failed": count}

and every row has ``mode`` ("training", "inference" or "loader"), ``batch_size``, ``status``
("ok", "failed", "skipped") and, when ok, ``img_per_s``; training rows add ``workers``,
``iter_ms``, ``data_wait_ms``, ``speedup`` and ``scaling_efficiency``; inference rows add
``latency_ms`` {mean, p50, p90, p95, p99} (a detector's with its post-processing, which
``inference_includes`` names; ``inference_runtime`` names ONNX Runtime and its provider
when it ran them, MXNet otherwise); loader rows add ``loader``, ``ratio_to_recorditer`` and
``share_of_decode_ceiling`` (classification) or ``ratio_to_gluoncv`` (detection, Mask
R-CNN). Mask R-CNN inference rows add ``detections_per_image`` (masks pasted). A
"mask-rcnn-peer" report has training and inference rows with ``implementation`` ("project"
or "gluoncv"), training rows ``data_wait_share``, and ``ratios`` at the top level
(`benchmarking.mask_rcnn_peer.peer_ratios`).
"""
import datetime
import json

from benchmarking.machine import describe
from benchmarking.stats import PERCENTILES, ratio

SCHEMA_VERSION = 1


def build_report(kind, rows, machine, command, **fields):
    """The report object of a run; `fields` (model, dtype, device, settings ...) go to the
    top level."""
    report = {"schema_version": SCHEMA_VERSION, "kind": kind,
              "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": command}
    report.update(fields)
    report.update(machine=machine, results=rows,
                  failed=sum(1 for r in rows if r.get("status") == "failed"))
    return report


def read_json(path):
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- printed tables
def format_table(headers, rows):
    """Columns aligned right (left for text), with a rule under the headers."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) or row[i] is None for row in rows) for i in
               range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] +
                     [line(r) for r in cells])


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_report(report):
    """The readable summary printed at the end of a run."""
    parts = [_title(report)]
    if report.get("machine"):
        parts.append(describe(report["machine"]))
    rows = report["results"]
    if report.get("kind") == "mask-rcnn-peer":
        parts.append(_format_peer(rows, report))
        return "\n".join(parts)
    ok = [r for r in rows if r.get("status") == "ok"]
    training = [r for r in ok if r["mode"] == "training"]
    if training:
        parts.append("\nTraining: images/s = global batch / mean iteration time (data wait "
                     "included)\n" + format_table(
                         ["workers", "batch", "img/s", "ms/iter", "data wait ms", "speedup",
                          "efficiency", "iterations"],
                         [[r["workers"], r["batch_size"], r["img_per_s"], r["iter_ms"],
                           r["data_wait_ms"], r.get("speedup"), r.get("scaling_efficiency"),
                           r["iterations"]] for r in training]))
    inference = [r for r in ok if r["mode"] == "inference"]
    if inference:
        includes = (f"; {report['inference_includes']}" if report.get("inference_includes")
                    else "")
        parts.append("\nInference: images/s = batch / mean latency; latencies in ms; cpu: the "
                     f"share of all cores' time the run got{includes}\n" +
                     format_table(["batch", "img/s", "mean"] + [f"p{q}" for q in PERCENTILES] +
                                  ["cpu"],
                                  [[r["batch_size"], r["img_per_s"], r["latency_ms"]["mean"]] +
                                   [r["latency_ms"][f"p{q}"] for q in PERCENTILES] +
                                   [_percent(r.get("cpu_share"))] for r in inference]))
    loaders = [r for r in rows if r["mode"] == "loader"]
    if loaders and report.get("kind") in ("detection-loaders", "mask-rcnn-loaders"):
        parts.append(_format_detection_loaders(loaders, report))
    elif loaders:
        parts.append(_format_loaders(loaders))
    problems = [r for r in rows if r.get("status") != "ok" and r["mode"] != "loader"]
    if problems:
        parts.append("\nNot measured:\n" + "\n".join(
            f"  {case_name(r)}: {r['status']}: {r.get('error', '')}" for r in problems))
    return "\n".join(parts)


def _title(report):
    what = " ".join(str(report[k]) for k in ("model", "dtype") if report.get(k))
    data = f", {report['data_backend']} data" if report.get("data_backend") else ""
    runtime = f" ({report['inference_runtime']})" if report.get("inference_runtime") else ""
    return f"{what or report['kind']}{data} on {report.get('device', '?')}{runtime}"


def _format_loaders(rows):
    from benchmarking.loaders import DESCRIPTIONS
    table = format_table(
        ["loader", "what", "img/s", "x ImageRecordIter", "share of decode", "note"],
        [[r["loader"], DESCRIPTIONS.get(r["loader"], ""), r.get("img_per_s"),
          r.get("ratio_to_recorditer"), _percent(r.get("share_of_decode_ceiling")),
          r.get("note") or f"{r['status']}: {r.get('error', '')}"] for r in rows])
    return (f"\nData loading alone, batch {rows[0]['batch_size']}, same file and "
            f"augmentations\n{table}")


def _format_detection_loaders(rows, report):
    mask_rcnn = report.get("kind") == "mask-rcnn-loaders"
    if mask_rcnn:
        from benchmarking.mask_rcnn_loaders import DESCRIPTIONS
        what = (f"Mask R-CNN training data alone (images, boxes, masks or polygons, RPN "
                f"targets), batch {rows[0]['batch_size']}, shorter side "
                f"{report.get('min_size', '?')}, longer at most {report.get('max_size', '?')}")
    else:
        from benchmarking.detection_loaders import DESCRIPTIONS
        size = report.get("image_size", "?")
        what = (f"SSD training data alone (images, boxes and targets of "
                f"{report.get('anchors', '?')} anchors), batch {rows[0]['batch_size']}, "
                f"{size}x{size}")
    table = format_table(
        ["loader", "what", "img/s", "x gluoncv", "note"],
        [[r["loader"], DESCRIPTIONS.get(r["loader"], ""), r.get("img_per_s"),
          r.get("ratio_to_gluoncv"), r.get("note") or f"{r['status']}: {r.get('error', '')}"]
         for r in rows])
    return f"\n{what}, same images and cores\n{table}"


def _format_peer(rows, report):
    """The --peer table: both implementations per mode, then the ratios."""
    table = format_table(
        ["mode", "implementation", "img/s", "ms/iter or p50", "data wait", "p99 ms",
         "detections", "status"],
        [[r["mode"], r["implementation"], r.get("img_per_s"),
          r.get("iter_ms", (r.get("latency_ms") or {}).get("p50")),
          _share(r.get("data_wait_share")), (r.get("latency_ms") or {}).get("p99"),
          r.get("detections_per_image"),
          r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"]
         for r in rows])
    ratios = ", ".join(f"{name} {value:.2f}x" for name, value in
                       (report.get("ratios") or {}).items() if value is not None)
    return (f"\n{report.get('model')} against {report.get('peer')}, batch 1, same images, "
            f"sizes and cores; data wait: its share of the iteration time\n{table}\n"
            f"project over gluoncv (above 1: the project is faster): {ratios or '-'}")


def _percent(value):
    return None if value is None else f"{100 * value:.0f}%"


def _share(value):
    return None if value is None else f"{100 * value:.2f}%"


def case_name(row):
    """"training n=2 b=32", "inference b=8", "loader dali-cpu b=64" ("training gluoncv n=1
    b=1" for a row with an ``implementation``)."""
    if row["mode"] == "loader":
        return f"loader {row['loader']} b={row['batch_size']}"
    side = f" {row['implementation']}" if row.get("implementation") else ""
    if row["mode"] == "inference":
        return f"inference{side} b={row['batch_size']}"
    return f"training{side} n={row['workers']} b={row['batch_size']}"


# ------------------------------------------------------------------------------ comparison
def compare(old, new):
    """Rows of ratios new/old for the cases both reports measured.

    Returns
    -------
    list of dict
        ``{"case", "old_img_per_s", "new_img_per_s", "img_per_s_ratio", "p50_ratio",
        "p99_ratio"}`` in the old report's order, then cases only one of them has (with
        ``None`` for what is missing).
    """
    old_rows = {case_name(r): r for r in old["results"]}
    new_rows = {case_name(r): r for r in new["results"]}
    cases = list(old_rows) + [c for c in new_rows if c not in old_rows]
    table = []
    for case in cases:
        a, b = old_rows.get(case, {}), new_rows.get(case, {})
        table.append({"case": case, "old_img_per_s": _ok(a, "img_per_s"),
                      "new_img_per_s": _ok(b, "img_per_s"),
                      "img_per_s_ratio": ratio(_ok(b, "img_per_s"), _ok(a, "img_per_s")),
                      "p50_ratio": ratio(_latency(b, "p50"), _latency(a, "p50")),
                      "p99_ratio": ratio(_latency(b, "p99"), _latency(a, "p99"))})
    return table


def _ok(row, key):
    return row.get(key) if row.get("status") == "ok" else None


def _latency(row, key):
    return (_ok(row, "latency_ms") or {}).get(key)


def format_comparison(old, new, old_name, new_name):
    """The printed comparison: which runs, then one line per case."""
    header = "\n".join(f"{tag}: {name}: {_title(r)}, {r.get('created', '?')}"
                       for tag, name, r in (("a", old_name, old), ("b", new_name, new)))
    rows = compare(old, new)
    table = format_table(["case", "a img/s", "b img/s", "b/a img/s", "b/a p50", "b/a p99"],
                         [[r["case"], r["old_img_per_s"], r["new_img_per_s"],
                           r["img_per_s_ratio"], r["p50_ratio"], r["p99_ratio"]]
                          for r in rows])
    return (f"{header}\n\nRatios b/a: above 1 is faster for img/s, slower for latency\n"
            f"{table}")


# ------------------------------------------------------------------------------------ plot
def plot(report, path):
    """Training and inference images/s against batch size, and inference latency
    percentiles, side by side in a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in report["results"] if r.get("status") == "ok"]
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for label, rows in _throughput_series(ok):
        panel = axes[0] if label.startswith("training") else axes[1]
        panel.plot([r["batch_size"] for r in rows], [r["img_per_s"] for r in rows], "o-",
                   label=label)
    inference = sorted((r for r in ok if r["mode"] == "inference"),
                       key=lambda r: r["batch_size"])
    for q in PERCENTILES:
        axes[2].plot([r["batch_size"] for r in inference],
                     [r["latency_ms"][f"p{q}"] for r in inference], "o-", label=f"p{q}")
    axes[0].set(xlabel="batch size per worker", ylabel="images/s", title="Training")
    axes[1].set(xlabel="batch size", ylabel="images/s", title="Inference")
    axes[2].set(xlabel="batch size", ylabel="latency per batch (ms)",
                title="Inference latency", yscale="log" if inference else "linear")
    for panel in axes:
        _batch_axis(panel, sorted({r["batch_size"] for r in ok}))
        if panel.get_legend_handles_labels()[0]:
            panel.legend()
        else:
            panel.text(0.5, 0.5, "not measured", ha="center", transform=panel.transAxes)
    figure.suptitle(_title(report))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _batch_axis(panel, batch_sizes):
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    panel.set_xscale("log", base=2)
    if batch_sizes:
        panel.set_xticks(batch_sizes)
    panel.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    panel.xaxis.set_minor_formatter(NullFormatter())
    if panel.get_yscale() == "log":
        low, high = panel.get_ylim()
        panel.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        # Label the minor ticks too when the data spans less than a decade or so.
        panel.yaxis.set_minor_formatter(FormatStrFormatter("%g") if high < 20 * low
                                        else NullFormatter())
    panel.grid(True, which="both", alpha=0.3)


def _throughput_series(rows):
    series = {}
    for r in sorted(rows, key=lambda r: r["batch_size"]):
        if r["mode"] == "training":
            series.setdefault(f"training, {r['workers']} worker(s)", []).append(r)
        elif r["mode"] == "inference":
            series.setdefault("inference", []).append(r)
    return sorted(series.items())
