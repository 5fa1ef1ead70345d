"""The fixed split of this experiment: the 96 shortest pairs of dpo_en_300.json (by the length
of the row's JSON text), shuffled with seed 0: 48 to train on, 48 held out."""
import json
import random
import sys
from pathlib import Path

rows = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
short = sorted(range(len(rows)), key=lambda i: (len(json.dumps(rows[i])), i))[:96]
random.Random(0).shuffle(short)
here = Path(__file__).parent
for name, part in (("train.json", short[:48]), ("heldout.json", short[48:])):
    (here / name).write_text(json.dumps([rows[i] for i in sorted(part)], indent=1,
                                        ensure_ascii=False), encoding="utf-8")
    print(name, len(part), "pairs, rows", sorted(part)[:5], "...")
