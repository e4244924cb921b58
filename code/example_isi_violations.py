"""Example science code: ISI-violation metrics of sorted units (replace with yours).

The ISI-violation ratio follows Hill et al. (2011, J Neurosci 31:8699), as in
SpikeInterface's ``isi_violations``: the number of inter-spike intervals shorter than
the refractory period, relative to the number a unit firing at random would have.

numpy and matplotlib are imported inside the functions that use them, not here: a
``--plan 1`` or a run with every job done then starts without them (matplotlib alone
costs half a second). Do the same with your heavy libraries.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def load_session(path: Path) -> dict:
    """Read ``spike_times.json``: session and subject ids, duration, spike times per unit."""
    return json.loads(path.read_text())


def isi_violations(
    spike_times_s: np.ndarray, duration_s: float, refractory_ms: float, censored_ms: float
) -> tuple[int, float]:
    """Return (number of violations, violation ratio) for one unit."""
    import numpy as np

    n_spikes = len(spike_times_s)
    if n_spikes < 2:
        return 0, 0.0
    isis = np.diff(np.sort(spike_times_s))
    refractory_s, censored_s = refractory_ms / 1000, censored_ms / 1000
    violations = int(np.sum((isis < refractory_s) & (isis >= censored_s)))
    expected_per_violation_window = 2 * n_spikes**2 * (refractory_s - censored_s) / duration_s
    return violations, violations / expected_per_violation_window


def unit_table(session: dict, refractory_ms: float, censored_ms: float) -> list[dict]:
    """One row per unit: spikes, rate, violations and violation ratio."""
    import numpy as np

    rows = []
    for unit_id, times in sorted(session["units"].items()):
        spikes = np.asarray(times, dtype=float)
        count, ratio = isi_violations(spikes, session["duration_s"], refractory_ms, censored_ms)
        rows.append(
            {
                "unit_id": unit_id,
                "n_spikes": len(spikes),
                "firing_rate_hz": round(len(spikes) / session["duration_s"], 3),
                "isi_violations": count,
                "isi_violations_ratio": round(ratio, 4),
            }
        )
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    """Write the unit table as CSV."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_units(rows: list[dict], cutoff: float, title: str, path: Path) -> None:
    """Violation ratio per unit against the cutoff; passing units in blue."""
    import matplotlib

    matplotlib.use("Agg")  # no screen in a capsule
    import matplotlib.pyplot as plt
    import numpy as np

    ratios = np.array([row["isi_violations_ratio"] for row in rows])
    passing = np.array([row["passes"] for row in rows])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    positions = np.arange(len(rows))
    ax.bar(positions[passing], ratios[passing], color="tab:blue", label="passes")
    ax.bar(positions[~passing], ratios[~passing], color="tab:red", label="fails")
    ax.axhline(cutoff, color="black", linestyle="--", label=f"cutoff {cutoff:g}")
    ax.set_xticks(positions, [row["unit_id"] for row in rows], rotation=90, fontsize=7)
    ax.set_ylabel("ISI-violation ratio")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
