"""Where records come from: files, folders, hub ids, ``datasets`` objects, the synthetic
suite (:func:`load_records`), and parsed into examples (:func:`load_examples`). Only a
source that is no local path is tried on the Hub."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import read_records
from .formats import DataError, DataReport, Example, InvalidRecord, to_examples
from .spec import FILE_SUFFIXES, SYNTHETIC, parse_data_spec


def read_file(path: str | Path, *, split: str = "train", keep_invalid: bool = False
              ) -> list[Any]:
    """Records of a JSON Lines file, or of a JSON list or ``{"data"|split: [...]}``; with
    ``keep_invalid`` a line of invalid JSON is an :class:`InvalidRecord` (a bad row)."""
    invalid = InvalidRecord if keep_invalid else None
    data, lines = read_records(path, error=DataError, invalid=invalid)
    if lines is not None or isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise DataError(f"expected a list of records, got {type(data).__name__}", file=str(path))
    lists = (data[key] for key in (split, "data", "train") if isinstance(data.get(key), list))
    found = next(lists, None)
    if found is None:
        raise DataError(
            f"expected a list of records, or an object with a {split!r} or 'data' list; "
            f"got an object with keys {sorted(map(str, data))[:20]}", file=str(path))
    return found


def read_parquet(path: str | Path) -> list[dict[str, Any]]:
    """Records of a Parquet file (pyarrow, a dependency of ``datasets``)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(str(path)).to_pylist()
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise DataError(f"cannot read Parquet file: {exc}", file=str(path)) from None


def _dataset_records(obj: Any, split: str, name: str) -> tuple[list[dict[str, Any]], str]:
    """Records of a ``datasets.Dataset``/``DatasetDict`` (or anything with ``to_list``)."""
    if isinstance(obj, Mapping) and not hasattr(obj, "to_list"):  # DatasetDict
        if split not in obj:
            raise DataError(
                f"split {split!r} not found; available splits: {', '.join(map(str, obj))}",
                file=name)
        return obj[split].to_list(), f"{name}[{split}]"
    return obj.to_list(), name


def _load_directory(path: Path, split: str) -> tuple[list[dict[str, Any]], str]:
    import datasets

    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        obj = datasets.load_from_disk(str(path))  # saved with save_to_disk
        return _dataset_records(obj, split, str(path))
    try:
        ds = datasets.load_dataset(str(path), split=split)
    except ValueError as exc:
        raise DataError(f"cannot load the directory as a dataset: {exc}", file=str(path)) from None
    return ds.to_list(), str(path)


def _load_hub(name: str, split: str) -> tuple[list[dict[str, Any]], str]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, gated, ...
        raise FileNotFoundError(
            f"data source {name!r} is not a local file or directory, and loading it as a "
            f"Hugging Face Hub dataset failed ({type(exc).__name__}: {exc}). Offline? "
            "Download the data and pass its local path (.json, .jsonl, .parquet or a "
            "directory)."
        ) from None
    return ds.to_list(), name


def load_records(source: Any, *, split: str = "train", synthetic_n: int | None = None,
                 synthetic_seed: int = 0, skip_bad_rows: bool = False) -> tuple[list[Any], str]:
    """``(records, display name)`` of a data spec (:func:`~.spec.parse_data_spec`: a
    ``.json``/``.jsonl``/``.ndjson``/``.parquet`` file, a folder for ``datasets``, a hub id,
    the suite: ``synthetic_n`` records of ``synthetic_seed``), a ``datasets`` object or a
    list. ``split`` picks a split; a missing path is a FileNotFoundError naming it."""
    if isinstance(source, (list, tuple)):
        return list(source), "<records>"
    if hasattr(source, "to_list") or (
        isinstance(source, Mapping) and all(hasattr(v, "to_list") for v in source.values())
    ):
        name = getattr(getattr(source, "info", None), "dataset_name", None) or "<dataset>"
        return _dataset_records(source, split, name)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "data source must be a path, a hub id, 'synthetic[:split]', a datasets "
            f"Dataset/DatasetDict or a list of records; got {type(source).__name__}"
        )
    spec = parse_data_spec(source)
    if spec.is_synthetic:
        from .synthetic import load_synthetic  # lazy: only when the suite is asked for

        split = spec.split or split
        return load_synthetic(split, seed=synthetic_seed, n=synthetic_n), f"{SYNTHETIC}:{split}"
    text = spec.path
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_directory(path, split)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".json", ".jsonl", ".ndjson"):
            return read_file(path, split=split, keep_invalid=skip_bad_rows), text
        if suffix == ".parquet":
            return read_parquet(path), text
        raise DataError(f"unsupported file type {suffix or '(no suffix)'!r}; expected one of "
                        f"{', '.join(FILE_SUFFIXES)}", file=text)
    if spec.kind == "path":
        raise FileNotFoundError(f"data file not found: {text}")
    return _load_hub(text, split)


def load_examples(source: Any, *, fmt: str = "auto", skip_bad_rows: bool = False,
                  max_examples: int | None = None, split: str = "train",
                  synthetic_n: int | None = None, synthetic_seed: int = 0,
                  ) -> tuple[list[Example], DataReport]:
    """:func:`load_records` parsed into examples; ``max_examples`` keeps the first N (the
    rest counted as ``limited``), every row still checked."""
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 0):
        raise ValueError(f"max_examples must be a non-negative integer, got {max_examples!r}")
    records, name = load_records(source, split=split, synthetic_n=synthetic_n,
                                 synthetic_seed=synthetic_seed, skip_bad_rows=skip_bad_rows)
    examples, report = to_examples(records, fmt, name, skip_bad_rows=skip_bad_rows)
    if max_examples is not None and len(examples) > max_examples:
        report.limited = len(examples) - max_examples
        examples = examples[:max_examples]
        report.used = len(examples)
    return examples, report
