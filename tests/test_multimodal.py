"""Multimodal chat data and `symnoise train` on a tiny vision-language model, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _vlm import image, make_llava, vlm_tokenizer
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.data import DataError
from symnoise.data.multimodal import MultimodalCollator, prepare_multimodal

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROWS = [
    {"messages": [{"role": "user", "content": "<image>what is the cat"},
                  {"role": "assistant", "content": "a red cat"},
                  {"role": "user", "content": "and the dog <image>"},
                  {"role": "assistant", "content": "a blue dog"}],
     "images": ["img/a.jpg", "img/b.jpg"]},
    {"messages": [{"role": "user", "content": "<image> tell the color"},
                  {"role": "assistant", "content": "green"}], "images": ["img/b.jpg"]},
    {"messages": [{"role": "user", "content": "count to three"},
                  {"role": "assistant", "content": "one two three"}]},
] * 2


@pytest.fixture
def vlm_dir(tmp_path):
    model, processor = make_llava(vlm_tokenizer())
    folder = tmp_path / "vlm"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, processor


def _data(tmp_path, rows=ROWS):
    (tmp_path / "img").mkdir(exist_ok=True)
    image(0, (30, 40)).save(tmp_path / "img" / "a.jpg")
    image(1, (16, 16)).save(tmp_path / "img" / "b.jpg")
    path = tmp_path / "mllm.json"
    path.write_text(json.dumps(rows))
    return path


def test_rows_become_features_with_their_images_and_response_labels(vlm_dir, tmp_path):
    _, processor = vlm_dir
    data = prepare_multimodal(str(_data(tmp_path)), processor, max_length=128)
    assert len(data.features) == 6 and data.data_report.skipped == 0
    image_id = processor.image_token_id
    for feature, row in zip(data.features, ROWS, strict=True):
        n_images = len(row.get("images", []))
        assert feature.get("pixel_values", torch.zeros(0)).shape[0] == n_images
        assert feature["input_ids"].count(image_id) == 4 * n_images  # 4 tokens per image
        labelled = [t for t, y in zip(feature["input_ids"], feature["labels"], strict=True)
                    if y != -100]
        replies = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        want = processor.tokenizer(" ".join(replies), add_special_tokens=False)["input_ids"]
        assert [t for t in labelled if t in want] == want  # every reply is trained on
        assert image_id not in labelled
    batch = MultimodalCollator(processor.tokenizer.pad_token_id)(data.features[:3])
    assert batch["pixel_values"].shape[0] == 3 and batch["input_ids"].shape[0] == 3


@pytest.mark.parametrize("row,kind", [
    ({"messages": ROWS[1]["messages"], "images": ["img/none.jpg"]}, "missing image"),
    ({"messages": ROWS[1]["messages"], "images": []}, "image count"),
    ({"messages": ROWS[1]["messages"], "images": ["img/bad.jpg"]}, "unreadable image"),
    ({"messages": ROWS[1]["messages"][:1], "images": ["img/a.jpg"]}, "no user->assistant pair"),
])
def test_bad_rows_are_named_or_skipped_and_counted(vlm_dir, tmp_path, row, kind):
    _, processor = vlm_dir
    path = _data(tmp_path, [ROWS[0], row])
    (tmp_path / "img" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"mllm\.json row 1: ") as err:
        prepare_multimodal(str(path), processor)
    assert err.value.kind == kind
    data = prepare_multimodal(str(path), processor, skip_bad_rows=True)
    assert len(data.features) == 1 and data.data_report.skipped_by_kind == {kind: 1}


def _train(model_dir, data, out, *extra):
    result = CliRunner().invoke(app, [
        "train", "--model", str(model_dir), "--data", str(data), "--output-dir", str(out),
        "--max-steps", "2", "--batch-size", "2", "--max-length", "128", "--no-progress",
        *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "run.json").read_text()), result.output


@pytest.mark.parametrize("noise_on", ["text", "vision"])
def test_cli_trains_a_tiny_vlm_and_reports_both_ratios(vlm_dir, tmp_path, noise_on):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder, _ = vlm_dir
    info, output = _train(folder, _data(tmp_path), tmp_path / "run", "--noise-on", noise_on)
    noise = info["noise_measured"]
    other = "vision" if noise_on == "text" else "text"
    assert noise[f"{noise_on}_noise_ratio_mean"] > 0 and noise[f"{other}_noise_ratio_mean"] == 0
    assert f"{noise_on} tokens" in output and info["global_step"] == 2
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "run")
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert AutoProcessor.from_pretrained(tmp_path / "run").image_token == "<image>"


@pytest.mark.skipif(not (SHARED / "mllm_demo.json").is_file(), reason="no ../shared/data")
def test_cli_trains_on_the_shared_multimodal_demo(vlm_dir, tmp_path):
    folder, _ = vlm_dir
    info, _ = _train(folder, SHARED / "mllm_demo.json", tmp_path / "run", "--max-length", "512")
    assert info["data"]["train"]["read"] == 6 and info["data"]["train"]["skipped"] == 0
    assert info["noise_measured"]["text_noise_ratio_mean"] > 0
