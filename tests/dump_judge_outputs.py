"""Write the judge's output files on the judge tests' inputs, to show a refactoring keeps
them byte-identical: ``python tests/dump_judge_outputs.py OUT_DIR`` then ``diff -r``.

Not a test (no assertions): each case reruns a test's inputs against the fake endpoint
(or the tiny HF judges) and copies annotations.json, leaderboard.json, leaderboard.md and
judge_check.json under OUT_DIR/CASE/. Temporary paths and ports are replaced by fixed text.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import test_judge as T  # noqa: E402
from _fake_openai import FakeAPI, serve  # noqa: E402
from _llama_server import free_port  # noqa: E402
from test_annotators import MODEL, REF  # noqa: E402
from test_judge_check import GOOD, REFERENCE, _shown  # noqa: E402
from test_judge_failures import _outputs, _reply  # noqa: E402

from symnoise.evaluate import judge as J  # noqa: E402
from symnoise.evaluate.judge_check import run_judge_check  # noqa: E402

RUN = getattr(J, "run_judge", J.judge_outputs)  # the entry point with an `annotator`
FILES = (J.ANNOTATIONS_FILE, J.LEADERBOARD_JSON, J.LEADERBOARD_MD, "judge_check.json")
MODELS = Path(tempfile.gettempdir()) / "symnoise-judge-dump-models"  # a fixed path: in specs


def _copy(src: Path, dst: Path, tmp: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (src / name).is_file():
            text = (src / name).read_text().replace(str(tmp), "TMP")
            text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
            (dst / name).write_text(text)


def _api(**kw):
    return serve(FakeAPI(url="", **kw))


def cases(tmp: Path):  # noqa: C901, PLR0915 - one list of cases
    for api in _api(reply=T.reply_by_score):
        model, ref = T.rows([3, 5, 1, 2, 9], [1, 2, 4, 2, 0], ["x", "x", "y", "y", "y"])
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "e2e", base_url=api.url,
                        seed=3, progress=False)
        yield "e2e"
        model, ref = T.rows([1, 2, 3, 4], [2, 2, 2, 2])
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "cache",
                        base_url=api.url, max_items=3, progress=False)
        yield "cache-first"
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "cache",
                        base_url=api.url, progress=False)
        yield "cache"
        api.reply = lambda m: "a"
        model, ref = T.rows([1] * 24, [1] * 24)
        for seed in (7, 8):
            J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / f"order{seed}",
                            base_url=api.url, seed=seed, progress=False)
            yield f"order{seed}"
        model, ref = T.rows([1, 2, 3], [3, 2, 1])
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "both-bias",
                        base_url=api.url, both_orders=True, progress=False)
        yield "both-bias"
        api.reply = T.reply_by_score
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "both-fair",
                        base_url=api.url, both_orders=True, progress=False)
        yield "both-fair"
        api.reply = lambda m: "a" if T.score_of(T.sections(m)["a"]) == 9 else "no idea"
        model, ref = T.rows([9], [0])
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "both-half",
                        base_url=api.url, both_orders=True, progress=False)
        yield "both-half"
        api.reply = lambda m: ("The weather is lovely today." if "Task 1" in m[-1]["content"]
                               else "b")
        model, ref = T.rows([1, 2, 3], [0, 0, 0])
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "unparseable",
                        base_url=api.url, progress=False)
        yield "unparseable"
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "unparseable",
                        base_url=api.url, progress=False)
        yield "unparseable-again"
        api.reply = lambda m: "b"
        api.top = lambda m, body: [(" b", math.log(0.6)), ("The", math.log(0.3)),
                                   ("a", math.log(0.1))]
        model, ref = T.rows([1, 2], [1, 1])
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "logprobs",
                        base_url=api.url, both_orders=True, progress=False)
        yield "logprobs"
        api.reply = lambda m: "The"
        api.top = lambda m, body: [("The", -0.1), ("A", -2.5)]
        api.restricted = lambda m: [("a", math.log(0.2)), (" b", math.log(0.3)), ("The", -9.0)]
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "restricted",
                        base_url=api.url, seed=5, progress=False)
        yield "restricted"
        api.bos = 7
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "restricted-bos",
                        base_url=api.url, seed=5, progress=False)
        yield "restricted-bos"
        api.tokenize = False
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "no-tokenizer",
                        base_url=api.url, seed=5, progress=False)
        yield "no-tokenizer"
    for api in _api(reply=T.reply_by_score, fail_first=2, fail_status=429, retry_after="0"):
        model, ref = T.rows([3], [1])
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "retry",
                        base_url=api.url, max_retries=1, progress=False)
        yield "retry-exhausted"
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "retry",
                        base_url=api.url, max_retries=1, progress=False)
        yield "retry-rerun"
    yield from _failures(tmp)
    yield from _hf(tmp)
    yield from _annotators(tmp)
    yield from _checks(tmp)


def _failures(tmp: Path):
    model, ref = _outputs(tmp, 20)
    J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "refused",
                    base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0,
                    progress=False)
    yield "refused"
    for api in _api(reply=_reply, die_after=5):
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "killed",
                        base_url=api.url, max_retries=0, progress=False)
    yield "killed"
    for api in _api(reply=_reply):
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp / "killed",
                        base_url=api.url, max_retries=0, progress=False)
    yield "killed-rerun"


def _hf(tmp: Path):
    for name, make in (("word", T._word_tokenizer), ("char", T._char_tokenizer)):
        folder = T._save_tiny_model(MODELS / name, make())
        model, ref = T._hf_rows(5)
        J.judge_outputs(model, ref, judge=f"hf:{folder}", output_dir=tmp / f"hf-{name}", seed=1,
                        batch_size=2, progress=False)
        yield f"hf-{name}"
    folder = T._save_tiny_model(MODELS / "tie", T._word_tokenizer(), tie_labels=True)
    model, ref = T._hf_rows(3)
    J.judge_outputs(model, ref, judge=f"hf:{folder}", output_dir=tmp / "hf-tie", progress=False)
    yield "hf-tie"
    tok = T._word_tokenizer()
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}The better output is {% endif %}")
    T._save_tiny_model(MODELS / "chat" / "model", tok, seed=2)
    model, ref = T._hf_rows(4)
    J.judge_outputs(model, ref, judge=f"hf:{MODELS / 'chat'}", output_dir=tmp / "hf-chat",
                    both_orders=True, progress=False)
    yield "hf-chat"


def _annotators(tmp: Path):
    for api in _api(reply=lambda m: "M"):
        api.top = lambda m, body: ([("M", math.log(0.7)), ("m", math.log(0.3))]
                                   if "Task 1" not in m[-1]["content"] else [("The", -0.1)])
        api.restricted = lambda m: [("M", math.log(0.4)), ("m", math.log(0.6))]
        RUN(MODEL, REF, annotator="weighted_alpaca_eval_gpt4_turbo",
                    judge="openai:local-judge", base_url=api.url, output_dir=tmp / "ae-weighted")
        yield "ae-weighted"
        first = "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"
        api.reply = lambda m, first=first: ("I cannot decide" if "Task 2" in m[-1]["content"]
                                         else first)
        api.top = None
        RUN(MODEL, REF, annotator="alpaca_eval_gpt4", judge="openai:local-judge",
                    base_url=api.url, output_dir=tmp / "ae-ranking")
        yield "ae-ranking"


def _checks(tmp: Path):
    for api in _api():
        api.reply = lambda m: "a"
        api.top = lambda m, body: [("a", math.log(0.95)), ("b", math.log(0.05))]
        for both in (False, True):
            run_judge_check("openai:biased", REFERENCE, base_url=api.url, n=16,
                            output_dir=tmp / f"check-biased-{both}", both_orders=both)
            yield f"check-biased-{both}"

        def top(messages, body):
            instruction, a, _ = _shown(messages)
            right = "a" if a == GOOD[instruction] else "b"
            return [(right, math.log(0.8)), ("a" if right == "b" else "b", math.log(0.2))]

        api.top = top
        run_judge_check("openai:oracle", REFERENCE, base_url=api.url, n=40,
                        output_dir=tmp / "check-oracle")
        yield "check-oracle"
        api.reply = lambda m: "m"
        api.top = lambda m, body: [("m", math.log(0.9)), ("M", math.log(0.1))]
        (tmp / "check-ae").mkdir()  # today's code needs it (its cache goes there first)
        run_judge_check("openai:biased", REFERENCE, base_url=api.url, n=8,
                        annotator="weighted_alpaca_eval_gpt4_turbo",
                        output_dir=tmp / "check-ae")
        yield "check-ae"
    folder = MODELS / "word"
    run_judge_check(f"hf:{folder}", REFERENCE, n=10, output_dir=tmp / "check-hf",
                    both_orders=True)
    yield "check-hf"


def main(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        folders = {"cache-first": "cache", "unparseable-again": "unparseable",
                   "retry-exhausted": "retry", "retry-rerun": "retry", "killed-rerun": "killed",
                   "order7": "order7", "order8": "order8"}
        for case in cases(tmp):
            _copy(tmp / folders.get(case, case), out / case, tmp)
            print(case, file=sys.stderr)
    print(json.dumps(sorted(p.name for p in out.iterdir())))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
