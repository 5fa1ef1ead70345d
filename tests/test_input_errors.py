"""Input errors name their cause: --skip-bad-rows skips and counts an invalid JSON Lines
line; a file that is not UTF-8 is an error naming the file and the byte offset; a
read-only or full disk is one line naming the path and the cause, not a traceback."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from symnoise.cli import _call, app
from symnoise.config import TrainConfig
from symnoise.data import load_examples
from symnoise.data.formats import DataError
from symnoise.experiments.experiment_file import load_experiment
from symnoise.generate import load_prompts
from symnoise.outputs import OutputsError, read_rows
from symnoise.run import read_jsonl

GOOD = {"instruction": "say hi", "input": "", "output": "hi"}


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_reader_reads_json_lines_alike(tmp_path: Path) -> None:
    """Data, prompts, outputs and run files go through one reader: a ``.json`` file of one
    object per line is JSON Lines everywhere, and a bad line is the same message."""
    good = json.dumps(GOOD)
    as_json = _jsonl(tmp_path / "lines.json", [good, "", good])
    assert len(load_examples(as_json)[0]) == 2 and len(load_prompts(as_json).prompts) == 2
    assert len(read_rows(as_json)) == 2 and len(read_jsonl(as_json)) == 2
    missing = _jsonl(tmp_path / "m.json", [good, "", '{"instruction": "x"}'])
    with pytest.raises(OutputsError, match=r"m\.json: line 3: missing the 'output' field"):
        read_rows(missing)
    bad = _jsonl(tmp_path / "bad.jsonl", [good, "{oops"])
    message = r"bad\.jsonl: line 2: invalid JSON \(Expecting property name enclosed in double"
    for read, error in ((load_examples, DataError), (load_prompts, DataError),
                        (read_rows, OutputsError), (read_jsonl, ValueError)):
        with pytest.raises(error, match=message):
            read(bad)
    whole = tmp_path / "whole.json"
    whole.write_text('[{"a": 1},\n oops]', encoding="utf-8")
    for read, error in ((load_examples, DataError), (read_rows, OutputsError)):
        with pytest.raises(error, match=r"whole\.json: invalid JSON at line 2 column 2: "):
            read(whole)


def test_skip_bad_rows_skips_and_counts_invalid_json_lines(tmp_path: Path) -> None:
    good = json.dumps(GOOD)
    path = _jsonl(tmp_path / "d.jsonl", [good, '{"instruction": "x", "output":', "", good,
                                         "not json at all", good])
    with pytest.raises(DataError, match=r"d\.jsonl: line 2: invalid JSON"):
        load_examples(path, fmt="alpaca")
    examples, report = load_examples(path, fmt="alpaca", skip_bad_rows=True)
    assert len(examples) == 3 and (report.read, report.used, report.skipped) == (5, 3, 2)
    assert report.skipped_by_kind == {"invalid JSON": 2}
    assert [r.split(": ", 1)[1] for r in report.skipped_reasons] == [
        "line 2: invalid JSON (Expecting value at column 31)",
        "line 5: invalid JSON (Expecting value at column 1)"]
    # auto-detection looks past the bad line; JSON lines saved as .json too
    assert load_examples(path, skip_bad_rows=True)[1].skipped == 2
    as_json = path.rename(tmp_path / "d.json")
    assert load_examples(as_json, fmt="alpaca", skip_bad_rows=True)[1].skipped == 2


def _latin1(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


def test_non_utf8_files_name_the_file_and_the_byte_offset(tmp_path: Path) -> None:
    line = json.dumps({"instruction": "caf\u00e9", "input": "", "output": "ok"}, ensure_ascii=False)
    offset = len(json.dumps(GOOD)) + 1 + line.index("\u00e9")  # the second line's é
    data = _latin1(tmp_path / "d.jsonl", json.dumps(GOOD) + "\n" + line + "\n")
    message = rf"d\.jsonl: not UTF-8 text: byte 0xe9 at byte offset {offset} \(line 2\)"
    with pytest.raises(ValueError, match=message):
        load_examples(data, fmt="alpaca", skip_bad_rows=True)
    with pytest.raises(ValueError, match=message):
        load_prompts(data)
    with pytest.raises(ValueError, match=message):
        read_rows(data)
    listed = _latin1(tmp_path / "l.json", json.dumps([GOOD]) + "\n# caf\u00e9")
    with pytest.raises(ValueError, match=r"l\.json: not UTF-8 text: byte 0xe9 at byte offset"):
        load_examples(listed)
    config = _latin1(tmp_path / "c.yaml", "lr: 1e-4\n# caf\u00e9\n")
    with pytest.raises(ValueError, match=r"c\.yaml: not UTF-8 text: byte 0xe9 at byte offset "
                                         rf"{len('lr: 1e-4 # caf')} \(line 2\)"):
        TrainConfig.from_sources(config)
    exp = _latin1(tmp_path / "e.yaml", "output_dir: x\n# caf\u00e9\n")
    with pytest.raises(ValueError, match=r"e\.yaml: not UTF-8 text: byte 0xe9 at byte offset "
                                         rf"{len('output_dir: x # caf')} "):
        load_experiment(exp)


def test_utf8_with_a_byte_order_mark_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert load_examples(path, fmt="alpaca")[1].used == 1


@pytest.mark.parametrize(("code", "cause"), [(errno.EROFS, "Read-only file system"),
                                             (errno.ENOSPC, "No space left on device"),
                                             (errno.EACCES, "Permission denied")])
def test_disk_errors_are_one_line(code: int, cause: str, capsys) -> None:
    def write() -> None:
        try:
            raise OSError(code, cause, "/runs/x/run.json")
        except OSError as exc:
            raise RuntimeError("saving failed") from exc  # as libraries wrap it

    with pytest.raises(typer.Exit) as info:
        _call(write)
    assert info.value.exit_code == 2
    assert capsys.readouterr().err == f"error: /runs/x/run.json: {cause}\n"


def test_disk_full_reported_as_text_by_a_library(capsys) -> None:
    def save() -> None:
        raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                           'message: "No space left on device" })')

    with pytest.raises(typer.Exit):
        _call(save)
    assert capsys.readouterr().err.startswith("error: No space left on device: RuntimeError:")


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        _call(lambda: 1 / 0)
    with pytest.raises(IsADirectoryError):  # an OSError that is not the disk's refusal
        _call(lambda: open("/", "rb"))


def test_read_only_output_folder_in_the_cli(tmp_path: Path, monkeypatch) -> None:
    """`symnoise judge` writing its results where the disk refuses (root ignores chmod,
    so the refusal is simulated at the one place results are written)."""
    from _fake_openai import FakeAPI, serve

    import symnoise._io as io

    def refuse(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    model = tmp_path / "m.json"
    model.write_text(json.dumps([{**GOOD, "generator": "m"}]))
    monkeypatch.setattr(io, "open", refuse, raising=False)
    for api in serve(FakeAPI(url="")):
        res = CliRunner().invoke(app, [
            "judge", "--model-outputs", str(model), "--reference-outputs", str(model),
            "--judge", "openai:fake", "--base-url", api.url, "--output-dir",
            str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'out'}")
    assert lines[0].endswith(": Read-only file system")


def test_a_journal_survives_a_write_torn_by_a_crash(tmp_path: Path) -> None:
    """generate's OUT.partial.jsonl and the judge cache: a last line cut mid-write (even in
    the middle of a UTF-8 character) is dropped from the file, so the next append is whole."""
    from symnoise._io import append_journal, read_journal

    path = tmp_path / "j.partial.jsonl"
    assert read_journal(path) == ([], 0)
    append_journal(path, [{"i": 0, "text": "caf\u00e9"}, {"i": 1}])
    with path.open("ab") as fh:
        fh.write('{"i": 2, "text": "caf\u00e9'.encode()[:-1])  # torn inside the é
    assert read_journal(path) == ([(1, {"i": 0, "text": "caf\u00e9"}), (2, {"i": 1})], 1)
    append_journal(path, [{"i": 2}])
    assert read_journal(path) == ([(1, {"i": 0, "text": "caf\u00e9"}), (2, {"i": 1}),
                                   (3, {"i": 2})], 0)
    with path.open("a") as fh:
        fh.write('{"i": 3}')  # whole, only its newline lost: kept, and terminated
    assert read_journal(path)[1] == 0
    append_journal(path, [{"i": 4}])
    assert [row for _, row in read_journal(path)[0]][-2:] == [{"i": 3}, {"i": 4}]
    path.write_text('{"i": 0}\n{oops\n{"i": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"j\.partial\.jsonl: line 2: invalid JSON"):
        read_journal(path, error=DataError)
    assert read_journal(path, invalid=lambda reason: reason)[0][1] == (
        2, "line 2: invalid JSON (Expecting property name enclosed in double quotes at column 2)")
