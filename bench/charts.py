"""bench/results/requests.png and scale.png, drawn with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.apps import ALL_IMPLEMENTATIONS, LABELS, VIEWS


def draw(report: dict, out: Path) -> None:
    res = report["results"]
    names = [n for n in ALL_IMPLEMENTATIONS if n in res]
    views = [v for v in VIEWS if any(v in res[n] for n in names)]
    fig, ax = plt.subplots(figsize=(11, 6))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        xs = [j + i * width for j in range(len(views))]
        ys = [res[name].get(v, {}).get("rps", 0) for v in views]
        ax.bar(xs, ys, width, label=LABELS[name])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(views))], views)
    ax.set_ylabel("requests/s (median)")
    m = report["machine"]
    ax.set_title(
        f"Requests/s per view ({m['nproc']} cores, waitress, wrk "
        f"{report['settings']['connections']} connections)"
    )
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.07))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "requests.png", dpi=100)
    plt.close(fig)

    scale = report.get("scale")
    if not scale:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r["rows"] for r in scale["latency"]]
    for key, label in (
        ("load_us", "load (median)"),
        ("save_us", "save (median)"),
        ("load_p99_us", "load (p99)"),
        ("save_p99_us", "save (p99)"),
    ):
        ax.plot(rows, [r[key] for r in scale["latency"]], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("rows in user_sessions")
    ax.set_ylabel("microseconds per operation")
    ax.set_ylim(bottom=0)
    ax.set_title("Session load and save latency vs table size (PostgreSQL)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=100)
    plt.close(fig)
