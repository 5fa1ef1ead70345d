"""Multimodal chat data for vision-language models: rows of ``messages`` (``role``,
``content``; ``<image>`` marks where an image goes) and ``images`` (paths, relative ones
resolved against the data file's folder), as in LLaMA-Factory's ``mllm_demo.json``.

Each row is rendered with the processor's chat template and tokenised turn by turn by the
processor itself (which expands each image into its visual tokens and makes the pixel
inputs); every assistant turn is trained on, the rest is prompt (label -100). Bad rows (a
missing, unreadable image, marker and image counts that differ, a marker in an assistant
turn, a row longer than ``max_length``: cutting it could cut an image) raise
:class:`DataError` naming file and row, or are skipped and counted (``skip_bad_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .collate import PaddingCollator
from .formats import DataError, DataReport, Example, unread_keys
from .sources import load_records
from .tokenize import IGNORE_INDEX, PreparedData, TokenizeReport, special_prefix

__all__ = ["MARKER", "MultimodalCollator", "prepare_multimodal"]

MARKER = "<image>"
_ROLES = ("system", "user", "assistant")


def _bad(message: str, kind: str, field: str | None = None) -> DataError:
    return DataError(message, kind=kind, field=field)


def _read_row(record: Any, folder: Path) -> tuple[list[dict[str, Any]], list[Any], list[str]]:
    """(messages, loaded images, image paths as given) of one row; DataError when bad."""
    if not isinstance(record, dict):
        raise _bad(f"row must be a JSON object, got {type(record).__name__}", "not an object")
    unread = unread_keys(record, ("messages", "images"))
    if unread:
        raise _bad(f"field(s) {unread} not read (multimodal rows have messages and images)",
                   "unread field", unread[0])
    messages, paths = record.get("messages"), record.get("images") or []
    if not isinstance(messages, list) or not messages:
        raise _bad("field 'messages' must be a non-empty list", "missing field", "messages")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _bad("field 'images' must be a list of paths", "bad images", "images")
    for i, m in enumerate(messages):
        ok = isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str)
        if not ok:
            raise _bad(f"messages[{i}] must be {{role: system|user|assistant, content: text}}",
                       "bad conversation", f"messages[{i}]")
        if m["role"] == "assistant" and MARKER in m["content"]:
            raise _bad(f"messages[{i}] (assistant) holds an {MARKER} marker", "image marker",
                       f"messages[{i}]")
    if messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages):
        raise _bad("messages must hold a user turn and end with an assistant turn",
                   "no user->assistant pair", "messages")
    markers = sum(m["content"].count(MARKER) for m in messages)
    if markers != len(paths):
        raise _bad(f"{markers} {MARKER} marker(s) but {len(paths)} image(s)", "image count",
                   "images")
    return messages, [_load_image(folder / p, p) for p in paths], paths


def _load_image(path: Path, given: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise _bad(f"image {given!r} not found ({path})", "missing image", "images")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise _bad(f"image {given!r} cannot be read: {exc}", "unreadable image", "images") from None


def _content(text: str) -> list[dict[str, str]]:
    parts: list[dict[str, str]] = []
    for i, piece in enumerate(text.split(MARKER)):
        if i:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _segments(messages: list[dict[str, Any]], processor: Any) -> list[tuple[str, bool, int]]:
    """(text, is_response, images in it) pieces of the rendered conversation, in order."""
    conv = [{"role": m["role"], "content": _content(m["content"])} for m in messages]

    def render(turns: list[dict[str, Any]], prompt: bool) -> str:
        return processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt)

    out, done, start = [], "", 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt, full = render(conv[:i], True), render(conv[: i + 1], False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise _bad("the chat template does not render the conversation turn by turn "
                       "(a prefix changes when a turn is added)", "chat template")
        images = sum(x["content"].count(MARKER) for x in messages[start:i])
        out += [(prompt[len(done):], False, images), (full[len(prompt):], True, 0)]
        done, start = full, i + 1
    return out


def _features(messages, images, processor, prefix: list[int]) -> dict[str, Any]:
    """input_ids, attention_mask and labels (lists), per-token extras (lists) and the pixel
    inputs (tensors, one entry per image or patch) of one row."""
    feature: dict[str, Any] = {"input_ids": list(prefix), "labels": [IGNORE_INDEX] * len(prefix)}
    pixels: dict[str, list[torch.Tensor]] = {}
    used = 0
    for text, response, n in _segments(messages, processor):
        enc = processor(text=[text], images=images[used: used + n] or None,
                        add_special_tokens=False, return_tensors="pt")
        used += n
        ids = enc["input_ids"][0].tolist()
        feature["input_ids"] += ids
        feature["labels"] += ids if response else [IGNORE_INDEX] * len(ids)
        for key, value in enc.items():
            if key in ("input_ids", "attention_mask"):
                continue
            if key.endswith("_ids") and value.shape == enc["input_ids"].shape:  # per token
                feature.setdefault(key, [0] * (len(feature["input_ids"]) - len(ids)))
                feature[key] += value[0].tolist()
            else:
                pixels.setdefault(key, []).append(value)
    feature["attention_mask"] = [1] * len(feature["input_ids"])
    return {**feature, **{k: torch.cat(v) for k, v in pixels.items()}}


def prepare_multimodal(source: Any, processor: Any, *, max_length: int = 512,
                       skip_bad_rows: bool = False, max_examples: int | None = None,
                       fmt: str = "auto") -> PreparedData:
    """Read, check and tokenise a multimodal chat file with ``processor`` (see the module)."""
    if fmt not in ("auto", "multimodal"):
        raise DataError(f"a vision-language model reads multimodal chat data; format {fmt!r} "
                        "is not it (use auto)", field="format", value=fmt)
    records, name = load_records(source)
    folder = Path(str(source)).expanduser().parent
    prefix = special_prefix(processor.tokenizer)
    report = DataReport("multimodal", name, read=len(records))
    tokens = TokenizeReport(n_in=len(records), max_length=max_length)
    features, examples = [], []
    for row, record in enumerate(records):
        try:
            messages, images, paths = _read_row(record, folder)
            feature = _features(messages, images, processor, prefix)
            n = len(feature["input_ids"])
            tokens.max_len_seen = max(tokens.max_len_seen, n)
            if n > max_length:
                raise _bad(f"{n} tokens with its images, over max_length {max_length} (a cut "
                           "could cut an image)", "too long")
        except DataError as bad:
            if not skip_bad_rows:
                raise DataError(bad.reason, file=name, row=row, field=bad.field,
                                kind=bad.kind) from None
            report.skip(bad, row)
            continue
        if max_examples is not None and len(features) >= max_examples:
            report.limited += 1
            continue
        features.append(feature)
        tokens.total_tokens += n
        tokens.response_tokens += sum(x != IGNORE_INDEX for x in feature["labels"])
        user = next(m["content"] for m in messages if m["role"] == "user")
        reply = next(m["content"] for m in messages if m["role"] == "assistant")
        examples.append(Example(user, "", reply, f"{name}:{row}", {"images": paths}))
    report.used = tokens.n_out = len(features)
    return PreparedData(features, examples, "multimodal", "chat_template", name, report, tokens,
                        max_length)


class MultimodalCollator(PaddingCollator):
    """:class:`PaddingCollator` for the text, per-token extras (``mm_token_type_ids``...)
    padded with 0, and the pixel inputs of all rows concatenated in row order."""

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)
        width = batch["input_ids"].shape[1]
        for key in dict.fromkeys(k for f in features for k in f):
            value = next(f[key] for f in features if key in f)
            if key in batch:
                continue
            if isinstance(value, torch.Tensor):
                batch[key] = torch.cat([f[key] for f in features if key in f])
            else:
                batch[key] = torch.tensor([f[key] + [0] * (width - len(f[key])) for f in features])
        return batch
