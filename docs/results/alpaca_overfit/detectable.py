"""One table of every `symnoise compare` JSON in a folder: B − A with its 95% interval, and
the smallest difference the comparison could have detected.

Smallest detectable difference (two-sided test at 5%, power 80%): (z_0.975 + z_0.80) × se,
where se is the paired bootstrap's standard error of B − A (the JSON's ``se``). A true
difference of that size would have been called significant four times in five.

    python docs/results/alpaca_overfit/detectable.py docs/results/alpaca_overfit/compare
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import NormalDist

_DIGITS = {"points": 2, "nats": 4, "chars": 1}  # compare's units (already scaled)
Z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.80)  # 1.960 + 0.842 = 2.802


def _detectable(m: dict, fmt) -> str:
    """(z_0.975 + z_0.80) x se; undefined when every paired unit agrees (se 0, e.g. both
    sides right on the same items): the bootstrap then has no spread to scale."""
    return fmt(Z * m["se"])[1:] if m["se"] else "— (no discordant pairs)"


def rows(folder: Path) -> list[str]:
    out = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for name, m in doc["metrics"].items():
            if m.get("diff") is None:
                continue
            digits = _DIGITS.get(m["unit"], 3)
            fmt = lambda v, d=digits: f"{v:+.{d}f}"  # noqa: E731
            out.append(f"| {m['b']} − {m['a']} | {name} ({m['unit']}) | {fmt(m['diff'])} | "
                       f"[{fmt(m['ci_low'])}, {fmt(m['ci_high'])}] | "
                       f"{'yes' if m['significant'] else 'no'} | {_detectable(m, fmt)} | "
                       f"{m['n']} |")
    return out


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parent / "compare"
    body = rows(folder)
    if not body:
        raise SystemExit(f"no compare JSON with a result in {folder}")
    print("| B − A | metric | diff | 95% interval | significant | smallest detectable | n |")
    print("|---|---|---:|---|---|---:|---:|")
    print("\n".join(body))


if __name__ == "__main__":
    main(sys.argv[1:])
