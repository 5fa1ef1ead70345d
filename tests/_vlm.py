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
                bos_token_id=1, eos_token_id=2, **extra)


def image(seed: int = 0, size=(20, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8"))


def make_llava(tok, seed: int = 0):
    """A tiny LLaVA (CLIP tower, Llama decoder) and its processor: 4 tokens per image."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

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


def make_qwen2vl(tok, seed: int = 0, version: str = "2"):
    """A tiny Qwen2-VL (``version="2.5"``: Qwen2.5-VL; mrope positions, patch merging) and
    its image processor."""
    import transformers as tf

    torch.manual_seed(seed)
    text = _text_config(tok, rope_parameters={"rope_type": "default", "mrope_section": [2, 1, 1],
                                              "rope_theta": 10000.0})
    vision = dict(depth=1, num_heads=2, patch_size=4, spatial_merge_size=2,
                  temporal_patch_size=2, in_channels=3)
    if version == "2":
        vision.update(embed_dim=16, hidden_size=32, mlp_ratio=2)
    else:
        vision.update(hidden_size=16, out_hidden_size=32, intermediate_size=32, window_size=8,
                      fullatt_block_indexes=[0])
    name = "Qwen2VL" if version == "2" else "Qwen2_5_VL"
    cfg = getattr(tf, f"{name}Config")(
        text_config=text, vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"))
    ip = tf.Qwen2VLImageProcessor(min_pixels=64, max_pixels=1024, patch_size=4, merge_size=2,
                                  temporal_patch_size=2)
    return getattr(tf, f"{name}ForConditionalGeneration")(cfg), ip


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


def other_family(tok, family: str):
    """(model, batch) of a tiny Gemma 3, Idefics 3 or SmolVLM with one image in one row (pixel
    values random: these families' image processors are not exercised here)."""
    import transformers as tf

    img = tok.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, image_size=16, patch_size=4)
    extra = {}
    if family == "gemma3":
        text = tf.Gemma3TextConfig(**_text_config(tok, head_dim=8, sliding_window=16))
        cfg = tf.Gemma3Config(text_config=text, vision_config=tf.SiglipVisionConfig(**vision),
                              mm_tokens_per_image=4, image_token_index=img)
        pixels = torch.randn(1, 3, 16, 16)
    else:
        config_class, _ = _IDEFICS[family]
        cfg = getattr(tf, config_class)(text_config=tf.LlamaConfig(**_text_config(tok)),
                                        vision_config=vision, scale_factor=2, image_token_id=img)
        pixels = torch.randn(1, 1, 3, 16, 16)
    model_class = "Gemma3ForConditionalGeneration" if family == "gemma3" else _IDEFICS[family][1]
    model = getattr(tf, model_class)(cfg)
    ids = torch.tensor([[1, 5] + [img] * 4 + [6, 7]])
    if family == "gemma3":
        extra["token_type_ids"] = (ids == img).long()
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids,
                   "pixel_values": pixels, **extra}


_IDEFICS = {"idefics3": ("Idefics3Config", "Idefics3ForConditionalGeneration"),
            "smolvlm": ("SmolVLMConfig", "SmolVLMForConditionalGeneration")}
