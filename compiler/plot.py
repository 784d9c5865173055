"""The pictures of ncc-stats --plot (matplotlib, an optional extra:
pip install 'ncc[plot]'): Amdahl's speed-up against the number of
processors, and the scaling law's loss against the parameter count."""

from __future__ import annotations

from typing import Any

import numpy as np

from ncc.diagnostics import NccError
from ncc.laws import ScalingLaw, amdahl, processor_counts

TOKENS_PER_PARAMETER = 20  # Chinchilla's compute-optimal ratio: the plot's D when no --tokens is given


def need_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise NccError("--plot needs matplotlib, an optional extra: pip install 'ncc[plot]' "
                       "(or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only, no screen
    matplotlib.rcParams["svg.hashsalt"] = "ncc"  # the same SVG for the same report
    import matplotlib.pyplot as plt
    return plt


def plot_report(report: Any, path: str) -> None:
    """Draw `report` (a StatsReport) into `path` (.svg or .png)."""
    plt = need_matplotlib()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    fig.suptitle(f"{report.model.rsplit('/', 1)[-1]}: {report.count.params:,} parameters, "
                 f"{report.count.flops / 1e9:.3g} GFLOP per forward at batch {report.count.batch}", fontsize=11)

    f = report.parallel_fraction
    counts = processor_counts(report.processors)
    left.plot(counts, counts, ":", color="gray", label="linear")
    if f is not None:
        n = np.unique(np.geomspace(1, report.processors, 200).round().astype(int))
        left.plot(n, [amdahl(f, int(k)) for k in n], color="C0", label=f"Amdahl, f = {f:.6g}")
        left.plot(counts, [amdahl(f, k) for k in counts], "o", color="C0")
        if f < 1:
            left.axhline(1 / (1 - f), color="C0", linestyle="--", linewidth=0.8,
                         label=f"limit 1/(1-f) = {1 / (1 - f):.1f}")
    else:
        left.text(0.5, 0.5, "no parallel fraction:\n--parallel-fraction F or --profile", ha="center",
                  va="center", transform=left.transAxes)
    left.set(xscale="log", yscale="log", xlabel="processors n", ylabel="speed-up P(n)",
             title="Amdahl: P(n) = 1 / ((1 - f) + f / n)")
    left.set_xticks(counts, [str(k) for k in counts])
    left.legend(loc="upper left", fontsize=8)
    left.grid(True, which="both", alpha=0.3)

    law = report.law or ScalingLaw()
    params = float(report.law_params[0] if report.law_params else report.count.trainable or report.count.params or 1)
    tokens = report.tokens[0] if report.tokens else None
    ns = np.geomspace(max(1e3, params / 1e3), max(params * 1e3, 1e9), 200)
    if tokens:
        right.plot(ns, [law.loss(k, tokens) for k in ns], color="C1", label=f"D = {tokens:.3g} tokens")
        right.plot([params], [law.loss(params, tokens)], "o", color="C1", label=f"this model, N = {params:.3g}")
    else:
        right.plot(ns, [law.loss(k, TOKENS_PER_PARAMETER * k) for k in ns], color="C1",
                   label=f"D = {TOKENS_PER_PARAMETER} N (compute-optimal ratio)")
        right.plot([params], [law.loss(params, TOKENS_PER_PARAMETER * params)], "o", color="C1",
                   label=f"this model, N = {params:.3g}")
    right.axhline(law.E, color="gray", linestyle=":", linewidth=0.8, label=f"E = {law.E}")
    right.set(xscale="log", xlabel="parameters N", ylabel="loss L(N, D)",
              title=f"L = {law.E} + {law.A}/N^{law.alpha} + {law.B}/D^{law.beta}")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path, metadata={"Date": None} if path.lower().endswith(".svg") else None)
    except OSError as e:
        raise NccError(f"cannot write the plot: {e.strerror}", path) from None
    finally:
        plt.close(fig)
