#!/usr/bin/env python3
"""Draws a troupe trace (Chrome Trace Event Format JSON, as `troupe run --trace` and
`wide_search --trace` write it) as a PNG timeline: one row per track (agent, and its tool-call
lanes), spans coloured by kind (invoke_agent, chat, execute_tool). For the README's picture;
Perfetto (https://ui.perfetto.dev) opens the same file interactively.

    pip install matplotlib
    tools/trace_png.py TRACE.json OUT.png [--title TEXT] [--max-tracks N]
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"invoke_agent": "#9ecae1", "chat": "#3182bd", "execute_tool": "#e6550d"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--title", default="")
    ap.add_argument("--max-tracks", type=int, default=40)
    args = ap.parse_args()
    events = json.load(open(args.trace))["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    spans = [e for e in events if e.get("ph") == "X"]
    tids = sorted({e["tid"] for e in spans})[: args.max_tracks]
    row = {tid: i for i, tid in enumerate(tids)}
    t0 = min(e["ts"] for e in spans)
    fig, ax = plt.subplots(figsize=(12, 0.32 * len(tids) + 1.2))
    for e in spans:
        if e["tid"] not in row:
            continue
        kind = e["name"].split(" ")[0]
        ax.broken_barh([((e["ts"] - t0) / 1e6, max(e.get("dur", 0) / 1e6, 0.002))],
                       (row[e["tid"]] - 0.4, 0.8), facecolors=COLOURS.get(kind, "#999999"))
    ax.set_yticks(range(len(tids)))
    ax.set_yticklabels([names.get(t, str(t)) for t in tids], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(args.title, fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
