"""Tiny random vision-language models and processors built in-process (no downloads)."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_tokenizer
from PIL import Image

VISION_TOKENS = ["<image>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} :"
                 "{% for c in m['content'] %}{% if c['type'] == 'image' %} <image>"
                 "{% else %} {{ c['text'] }}{% endif %}{% endfor %}"
                 "{% if m['role'] == 'assistant' %}</s>{% endif %} ; {% endfor %}"
                 "{% if add_generation_prompt %}assistant :{% endif %}")


def vlm_tokenizer():
    tok = make_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": VISION_TOKENS})
    tok.pad_token = tok.eos_token
    return tok


def _text_config(tok, **extra):
    return dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                bos_token_id=1, eos_token_id=2, pad_token_id=2, **extra)


def image(seed: int = 0, size=(20, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8"))


def make_llava(tok, seed: int = 0):
    """A tiny LLaVA (CLIP tower, Llama decoder) and its processor: 4 tokens per image."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, image_size=16, patch_size=8)
    cfg = LlavaConfig(vision_config=vision, text_config=LlamaConfig(**_text_config(tok)),
                      image_token_index=tok.convert_tokens_to_ids("<image>"))
    ip = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8,
                          vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    return LlavaForConditionalGeneration(cfg), proc


def llava_batch(tok, proc):
    """Two rows of different lengths, one image each, labels on the text after the image."""
    out = proc(text=["<image> what is the cat", "the dog is red <image>"],
               images=[image(0), image(1)], return_tensors="pt", padding=True)
    labels = out["input_ids"].clone()
    labels[:, :5] = -100
    labels[out["attention_mask"] == 0] = -100
    return {**out, "labels": labels}


def make_qwen2vl(tok, seed: int = 0):
    """A tiny Qwen2-VL (mrope positions, patch merging) and its image processor."""
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor)

    torch.manual_seed(seed)
    text = _text_config(tok, rope_parameters={"rope_type": "default", "mrope_section": [2, 1, 1],
                                              "rope_theta": 10000.0})
    cfg = Qwen2VLConfig(text_config=text, vision_config=dict(
        depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=4,
        spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"))
    ip = Qwen2VLImageProcessor(min_pixels=64, max_pixels=1024, patch_size=4, merge_size=2,
                               temporal_patch_size=2)
    return Qwen2VLForConditionalGeneration(cfg), ip


def qwen_batch(tok, ip):
    """Row 0: text, an image, text; row 1: text only, padded. Tokens expanded as the
    Qwen2-VL processor does (grid / merge_size**2 image pads between vision start/end)."""
    pv = ip(images=[image(2, (24, 32))], return_tensors="pt")
    n = int(pv["image_grid_thw"].prod()) // 4
    ids = tok.convert_tokens_to_ids
    row0 = [1, 5, 6, ids("<|vision_start|>")] + [ids("<|image_pad|>")] * n + \
        [ids("<|vision_end|>"), 7, 8, 9]
    row1 = [1, 10, 11, 12, 13]
    width = len(row0)
    input_ids = torch.tensor([row0, row1 + [2] * (width - len(row1))])
    mask = torch.tensor([[1] * width, [1] * len(row1) + [0] * (width - len(row1))])
    labels = input_ids.clone()
    labels[0, : width - 3] = -100
    labels[1, :3] = -100
    labels[mask == 0] = -100
    types = (input_ids == ids("<|image_pad|>")).long()  # what the processor returns
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
            "mm_token_type_ids": types, **pv}
