"""The benchmark suite (issue 7), in one command; not part of the test run.

    python -m bench.run [--quick] [--only rate,scale,cost,cpu,memory,seeds,redis,sharing]

Everything runs against the sandbox and a redis-server on 127.0.0.1, each in its own process.
Results go to bench/results.json and the plots to docs/benchmarks/*.png; docs/benchmarks.md
gives the numbers of the last full run and the machine it ran on. ``--quick`` runs shorter and
smaller, to check the suite itself.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench import cost, memory, rate, redis_distance, seeds_scale, sharing
from bench.common import ROOT, machine

RESULTS = ROOT / "bench" / "results.json"
PLOTS = ROOT / "docs" / "benchmarks"


def main() -> None:
    parser = argparse.ArgumentParser(description="rednote_crawl benchmarks")
    parser.add_argument("--quick", action="store_true", help="shorter runs, to check the suite")
    parser.add_argument("--only", default="rate,scale,cost,cpu,memory,seeds,redis,sharing")
    parser.add_argument("--crawlers", default=",".join(rate.CRAWLERS), help="rate: which crawlers to run again")
    parser.add_argument("--tables", action="store_true", help="print the last results as markdown tables; run nothing")
    args = parser.parse_args()
    if args.tables:
        print(tables(json.loads(RESULTS.read_text())))
        return
    only = set(args.only.split(","))
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = machine()
    results["command"] = f"python -m bench.run{' --quick' if args.quick else ''} --only {args.only}"
    seconds = 15 if args.quick else 40
    steps = {
        "rate": lambda: _merge(
            results.get("rate", []), rate.efficiency(seconds, crawlers=tuple(args.crawlers.split(",")))
        ),
        "scale": lambda: rate.scale(seconds),
        "details": lambda: rate.with_details(seconds),
        "cost": cost.calls_per_note,
        "cpu": lambda: cost.cpu_per_note(100 if args.quick else 600),
        "memory": lambda: memory.measure((100_000,) if args.quick else (1_000_000, 10_000_000)),
        "seeds": lambda: seeds_scale.measure(
            (20_000,) if args.quick else seeds_scale.COUNTS, seconds=15 if args.quick else 60
        ),
        "redis": lambda: redis_distance.measure(keywords=20 if args.quick else redis_distance.KEYWORDS),
        "sharing": lambda: sharing.measure(rounds=1 if args.quick else 2),
    }
    for name, step in steps.items():
        if name in only:
            print(f"{name}:", flush=True)
            began = time.monotonic()
            results[name] = step()
            print(f"  ({time.monotonic() - began:.0f} s)", flush=True)
            RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    plot(results)


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a partial run replace the same (crawler, rate, workers) of the last one."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["crawler"], row["rate"], row["workers"])

    fresh = {key(row) for row in new}
    return [row for row in old if key(row) not in fresh] + new


def tables(results: dict[str, Any]) -> str:
    """The markdown tables of docs/benchmarks.md."""
    out = []
    if rows := results.get("rate"):
        out += ["| R | workers | crawler | paid pages/s | ÷ R | 302 answers |", "|---|---|---|---|---|---|"]
        order = {name: n for n, name in enumerate(rate.CRAWLERS)}
        for row in sorted(rows, key=lambda r: (r["rate"], r["workers"], order.get(r["crawler"], 9))):
            out.append(
                f"| {row['rate']:g} | {row['workers']} | {row['crawler']} | {row['paid_per_s']} "
                f"| {row['efficiency']:.1%} | {row['share_302']:.1%} |"
            )
        out.append("")
    if cost_row := results.get("cost"):
        out += [
            "| calls | paid calls | minimum | unique notes | paid calls per note | minimum per note |",
            "|---|---|---|---|---|---|",
            f"| {cost_row['calls']} | {cost_row['paid_calls']} | {cost_row['minimum_paid_calls']} "
            f"| {cost_row['unique_notes']} of {cost_row['expected_notes']} | {cost_row['paid_per_note']} "
            f"| {cost_row['minimum_per_note']} |",
            "",
        ]
    if cpu := results.get("cpu"):
        out += ["| client | CPU s | notes | CPU s per 1,000 notes |", "|---|---|---|---|"]
        for name in ("rednote_crawl", "plain_asyncio"):
            row = cpu[name]
            out.append(f"| {name} | {row['cpu_seconds']} | {row['notes']:,} | {row['cpu_per_1000_notes']} |")
        out += [f"| ratio | | | {cpu['ratio']} |", ""]
    if rows := results.get("memory"):
        out += [
            "| ids | Python set (local) | Redis seen_notes | Redis set of ids | scrapy-redis dupefilter |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            out.append(
                f"| {row['ids']:,} | {row['local_python_set']} | {row['redis_seen_notes']} "
                f"| {row['redis_set_of_ids']} | {row['scrapy_redis_dupefilter']} |"
            )
        out.append("")
    if rows := results.get("scale"):
        out += ["| workers | paid pages/s |", "|---|---|"] + [f"| {r['workers']} | {r['paid_per_s']} |" for r in rows]
        out.append("")
    if rows := results.get("seeds"):
        out.append(seeds_scale.table(rows))
    if rows := results.get("redis"):
        out.append(redis_distance.table(rows))
    if rows := results.get("sharing"):
        out.append(sharing.table(rows))
    return "\n".join(out)


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    if rows := results.get("rate"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        labels = sorted({(r["rate"], r["workers"]) for r in rows})
        crawlers = list(rate.CRAWLERS)
        for axis, key, title in (
            (axes[0], "efficiency", "paid pages/s ÷ R"),
            (axes[1], "share_302", "share of 302 answers"),
        ):
            for n, crawler in enumerate(crawlers):
                values = [
                    next((r[key] or 0 for r in rows if (r["rate"], r["workers"]) == lab and r["crawler"] == crawler), 0)
                    for lab in labels
                ]
                axis.bar([i + n * 0.2 for i in range(len(labels))], values, width=0.2, label=crawler)
            axis.set_xticks(
                [i + 0.3 for i in range(len(labels))], [f"R={r:g}, {w} worker{'s' * (w > 1)}" for r, w in labels]
            )
            axis.set_title(title)
        axes[0].axhline(0.95, color="grey", linestyle="--", linewidth=1)
        axes[1].axhline(0.02, color="grey", linestyle="--", linewidth=1)
        axes[0].legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        fig.savefig(PLOTS / "rate_efficiency.png", dpi=110)
        plt.close(fig)
    if rows := results.get("scale"):
        fig, axis = plt.subplots(figsize=(5.5, 4))
        axis.plot([r["workers"] for r in rows], [r["paid_per_s"] for r in rows], marker="o")
        axis.set_xlabel("workers (one Redis)")
        axis.set_ylabel("paid pages per second")
        axis.set_title("goodput, no token limit, 0.5 s answers")
        fig.tight_layout()
        fig.savefig(PLOTS / "scale.png", dpi=110)
        plt.close(fig)
    if rows := results.get("memory"):
        fig, axis = plt.subplots(figsize=(7, 4))
        layouts = ["local_python_set", "redis_seen_notes", "redis_set_of_ids", "scrapy_redis_dupefilter"]
        for n, row in enumerate(rows):
            axis.bar(
                [i + n * 0.4 for i in range(len(layouts))],
                [row[k] for k in layouts],
                width=0.4,
                label=f"{row['ids']:,} ids",
            )
        axis.set_xticks([i + 0.2 for i in range(len(layouts))], [k.replace("_", " ") for k in layouts], fontsize=8)
        axis.axhline(16, color="grey", linestyle="--", linewidth=1)
        axis.set_ylabel("bytes per id")
        axis.legend()
        fig.tight_layout()
        fig.savefig(PLOTS / "dedupe_memory.png", dpi=110)
        plt.close(fig)
    if rows := results.get("redis"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for count in sorted({r["workers"] for r in rows}):
            mine = sorted((r for r in rows if r["workers"] == count), key=lambda r: r["delay_ms"])
            label = f"{count} worker{'s' * (count > 1)}"
            axes[0].plot([r["delay_ms"] for r in mine], [r["pages_per_s"] for r in mine], marker="o", label=label)
            axes[1].plot(
                [r["delay_ms"] for r in mine], [r["round_trips_per_page"] for r in mine], marker="o", label=label
            )
        axes[0].set_ylabel("paid pages per second")
        axes[0].set_title("goodput, Redis behind a delay (0.2 s answers, no token limit)", fontsize=10)
        axes[1].set_ylabel("round trips to Redis per page")
        axes[1].set_title("round trips per page, all workers", fontsize=10)
        for axis in axes:
            axis.set_xlabel("delay each way (ms)")
            axis.set_ylim(bottom=0)
            axis.legend()
        fig.tight_layout()
        fig.savefig(PLOTS / "redis.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
