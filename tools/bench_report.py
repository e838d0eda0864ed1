"""Render tools/bench.py results: Markdown tables for docs/performance.md and a ratio plot."""

from __future__ import annotations

CONTENDERS = ("lgc", "lgc_eager", "torch", "torch_compile", "jax")
LABEL = {"lgc": "lgc train step", "lgc_eager": "lgc dlfeval+adamupdate",
         "torch": "PyTorch eager", "torch_compile": "torch.compile", "jax": "JAX jit"}
PEERS = ("torch", "torch_compile", "jax")
GOAL = {"mlp": {"torch": 0.5, "jax": 1.0}, "lstm": {"torch": 0.8, "jax": 1.0},
        "lenet": {"torch": 1.0, "jax": 1.0}, "cnn": {"torch": 1.0, "jax": 1.0},
        "adam": {"jax": 1.0}}


def _cell(r: dict | None, ratio: bool = True) -> str:
    if not r:
        return "-"
    if r.get("status") != "ok":
        return r.get("status", "-")
    s = f"{r['ms']:.3g}"
    if ratio and "ratio" in r:
        s += f" (×{r['ratio']:.2f})"
    if r.get("agree") is False:
        s += " **disagrees**"
    return s


def markdown(results: dict) -> str:
    m = results["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_GiB']} GiB; Python "
           f"{m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) +
           f"; load average at start {m['loadavg'][0]:.1f}, at end "
           f"{m.get('loadavg_end', [float('nan')])[0]:.1f}. Backend {results['backend']}, "
           f"median of {results['reps']} steps" + (
               f"; each figure the median of {results['rounds']} such processes, run in turn"
               if results.get("rounds", 1) > 1 else "") + ".", "",
           "ms per train step (ratio lgc train step / peer in parentheses):", "",
           "| workload | " + " | ".join(LABEL[c] for c in CONTENDERS)
           + " | compile cold / warm (s) |",
           "|---" * (len(CONTENDERS) + 2) + "|"]
    for row in results["workloads"]:
        comp = (f"{row['compile_cold_s']:.2f} / {row['compile_warm_s']:.2f}"
                if row.get("compile_cold_s") is not None else "-")
        out.append(f"| {row['workload']} | " + " | ".join(_cell(row.get(c)) for c in CONTENDERS)
                   + f" | {comp} |")
    if results.get("rounds", 1) > 1:
        out += ["", "Run to run (ms per step, the median of each round's process, in order):",
                "", "| workload | " + " | ".join(LABEL[c] for c in CONTENDERS) + " |",
                "|---" * (len(CONTENDERS) + 1) + "|"]
        for row in results["workloads"]:
            out.append(f"| {row['workload']} | " + " | ".join(
                ", ".join(f"{v:.3g}" for v in (row.get(c) or {}).get("ms_rounds", [])) or "-"
                for c in CONTENDERS) + " |")
    out += ["", "Peak resident memory (MB, maxrss of the process; before the first step in "
            "parentheses):", "", "| workload | " + " | ".join(LABEL[c] for c in CONTENDERS) + " |",
            "|---" * (len(CONTENDERS) + 1) + "|"]
    for row in results["workloads"]:
        cells = []
        for c in CONTENDERS:
            r = row.get(c) or {}
            cells.append(f"{r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f})"
                         if "peak_rss_mb" in r else "-")
        out.append(f"| {row['workload']} | " + " | ".join(cells) + " |")
    lim = results.get("limits")
    if lim:
        out += ["", f"Limits: float32 triad {lim['triad_GBps']:.1f} GB/s "
                f"({lim['triad_elements']:,} elements per array, best run); np.matmul "
                f"{lim['gemm_n']}³ {lim['gemm_GFLOPs']:.0f} GFLOP/s. Adam update alone over "
                f"{lim['adam_n']:,} parameters (7 floats moved per parameter): "
                f"lgc adamupdate {lim['adam_lgc_ms']:.2f} ms = "
                f"{lim['adam_lgc_pct_triad']:.0f}% of triad; its kernel alone "
                f"{lim['adam_kernel_ms']:.2f} ms = {lim['adam_kernel_pct_triad']:.0f}%; "
                + (f"PyTorch Adam.step {lim['adam_torch_ms']:.2f} ms = "
                   f"{lim['adam_torch_pct_triad']:.0f}%." if lim.get("adam_torch_ms")
                   else "PyTorch not installed.")]
    d = results.get("depth")
    if d:
        out += ["", "Cold compile (first train step, empty cache) against depth: " +
                ", ".join(f"{k} layers {v:.2f} s" for k, v in d["cold_compile_s"].items()) +
                f"; least-squares line {d['seconds_per_layer']:.3f} s/layer + "
                f"{d['intercept_s']:.2f} s, R² {d['r2']:.3f}."]
    mem = results.get("memory")
    if mem and "rss_100_mb" in mem:
        out += ["", f"Memory over 1,000 MLP train steps: maxrss {mem['rss_100_mb']:.1f} MB after "
                f"100 steps, {mem['rss_1000_mb']:.1f} MB after 1,000."]
    return "\n".join(out)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = results["workloads"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(PEERS)
    for k, peer in enumerate(PEERS):
        xs, ys = [], []
        for i, row in enumerate(rows):
            r = row.get(peer) or {}
            if "ratio" in r:
                xs.append(i + (k - 1) * width)
                ys.append(r["ratio"])
        ax.bar(xs, ys, width, label=f"lgc / {LABEL[peer]}")
    for i, row in enumerate(rows):
        for peer, goal in GOAL.get(row["workload"], {}).items():
            k = PEERS.index(peer)
            ax.plot([i + (k - 1.5) * width, i + (k - 0.5) * width], [goal, goal], "k-", lw=2)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xticks(range(len(rows)), [r["workload"] for r in rows])
    ax.set_ylabel("time ratio lgc / peer (lower is better)")
    ax.set_title("lgc train step vs peers (black ticks: issue-9 goals)")
    # below the axes: inside, it covers the bars of whichever workload sits under it
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(PEERS),
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


