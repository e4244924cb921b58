"""Write the example's synthetic sessions and job files into data/ (fixed seed).

Each session holds sorted units of extracellular recordings: spike times in seconds.
Every unit fires with a 2 ms dead time (a clean neuron); some are contaminated with
spikes from other neurons that ignore it, which is what ISI violations detect.

    python scripts/make_example_data.py [DATA_DIR]

The framework's test capsule holds the same data (tests/capsule/data/, which the test
compares with), so the example in data/ can be replaced freely.

Run again, it writes byte-identical files (the standard library's Mersenne Twister,
whose stream is stable across Python versions); a test checks that.
"""

import json
import random
import sys
import uuid
from pathlib import Path

SEED = 20250314
DURATION_S = 60.0
DEAD_TIME_S = 0.002
UNITS_PER_SESSION = 16
CONTAMINATION_LEVELS = [0.0, 0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8]
SESSIONS = [
    ("ecephys_612345_2025-03-14_10-02-11", "612345"),
    ("ecephys_612345_2025-03-15_09-48-30", "612345"),
    ("ecephys_654321_2025-04-02_14-20-05", "654321"),
]
CUTOFFS = [0.1, 0.5]


def unit_spike_times(rng: random.Random, rate_hz: float, contamination: float) -> list[float]:
    """A renewal process with dead time, plus Poisson contamination at a fraction of its rate."""
    times = []
    t = rng.uniform(0, 1 / rate_hz)
    while t < DURATION_S:
        times.append(t)
        t += DEAD_TIME_S + rng.expovariate(rate_hz)
    if contamination > 0:
        t = rng.expovariate(rate_hz * contamination)
        while t < DURATION_S:
            times.append(t)
            t += rng.expovariate(rate_hz * contamination)
    return sorted(round(x, 4) for x in times)


def session(rng: random.Random, session_id: str, subject_id: str) -> dict:
    """One session's units, with rates of 2-15 Hz and mixed contamination."""
    units = {}
    for index in range(UNITS_PER_SESSION):
        rate = rng.uniform(2.0, 15.0)
        contamination = rng.choice(CONTAMINATION_LEVELS)
        units[f"unit_{index:02d}"] = unit_spike_times(rng, rate, contamination)
    return {
        "session_id": session_id,
        "subject_id": subject_id,
        "duration_s": DURATION_S,
        "units": units,
    }


def job(rng: random.Random, session_id: str, subject_id: str, cutoff: float) -> dict:
    """A job file in the upstream dispatcher's current shape."""
    return {
        "s3_location": [f"sessions/{session_id}"],
        "asset_name": [session_id],
        "docdb_record_id": [str(uuid.UUID(int=rng.getrandbits(128), version=4))],
        "file_location": None,
        "distributed_parameters": {"isi_violations_cutoff": cutoff},
        "group_metadata": {"subject_id": subject_id},
        "query": None,
        "analysis_code": None,
    }


def write_json(path: Path, value: object, compact: bool = False) -> None:
    """Write JSON with a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(value, separators=(",", ":")) if compact else json.dumps(value, indent=2)
    path.write_text(text + "\n", encoding="utf-8")


def main(data_dir: Path) -> None:
    """Write sessions/, job_dict/ and analysis_parameters.json under ``data_dir``."""
    rng = random.Random(SEED)
    for session_id, subject_id in SESSIONS:
        write_json(
            data_dir / "sessions" / session_id / "spike_times.json",
            session(rng, session_id, subject_id),
            compact=True,
        )
        for cutoff in CUTOFFS:
            name = f"{session_id}_cutoff-{cutoff:.2f}.json"
            write_json(data_dir / "job_dict" / name, job(rng, session_id, subject_id, cutoff))
    write_json(
        data_dir / "analysis_parameters.json",
        {
            "fixed_parameters": {
                "analysis_name": "Unit Filtering",
                "analysis_tag": "example",
                "isi_violations_cutoff": 0.5,
            },
            "distributed_parameters": [{"isi_violations_cutoff": c} for c in CUTOFFS],
        },
    )


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "data"
    )
