"""Write ``sparse_genai.csv``: a made-up sparse GenAI request trace (fixture, not data).

A stand-in for real GenAI serving traces with long quiet spells (weeks of requests, most hours
empty), which are not shipped here. 23 days of ``timestamp,model`` rows, ms resolution: on each
active day (about 60%, never both weekend days busy) a few user sessions start between 08:00 and
20:00 (Poisson, 4 a day); a session sends a geometric number of requests (mean 12), 2-60 s apart,
to one of three models (Zipf-like shares 0.6/0.3/0.1). Whole days and nights are silent.

    python tests/data/make_sparse_genai.py   # rewrites the file (seeded: the same bytes)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("sparse_genai.csv")
DAYS, SEED = 23, 2024
MODELS, SHARES = ("sdxl-turbo", "llama-3-8b", "whisper-large"), (0.6, 0.3, 0.1)


def main() -> None:
    rng = np.random.default_rng(SEED)
    t0 = datetime(2024, 5, 6)  # a Monday
    times: list[float] = []
    models: list[str] = []
    for day in range(DAYS):
        weekend = day % 7 >= 5
        if rng.random() > (0.3 if weekend else 0.7):
            continue  # a silent day
        for _ in range(rng.poisson(4)):
            t = day * 86400 + rng.uniform(8, 20) * 3600
            m = MODELS[rng.choice(3, p=SHARES)]
            for _ in range(rng.geometric(1 / 12)):
                times.append(t)
                models.append(m)
                t += rng.uniform(2, 60)
    order = np.argsort(times, kind="stable")
    lines = ["timestamp,model"]
    for i in order:
        ts = t0 + timedelta(milliseconds=round(times[i] * 1000))
        lines.append(f"{ts:%Y-%m-%d %H:%M:%S}.{ts.microsecond // 1000:03d},{models[i]}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{OUT}: {len(lines) - 1} requests")


if __name__ == "__main__":
    main()
