"""Vision-language models, found by structure: the language model that receives the merged
embeddings, and the ids of the tokens whose positions hold visual features.

Every family of transformers 5 tested here (LLaVA, Qwen2-VL, Qwen2.5-VL, Gemma 3, Idefics 3,
SmolVLM) embeds the text, scatters the visual features into the image-placeholder positions
and calls its text decoder with ``inputs_embeds``: the decoder is the module that holds the
input embeddings, a sub-model with a text config of its own. The noise goes on that call's
``inputs_embeds`` (:mod:`symnoise.integration`), after the merge.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["VisionLanguage", "find_vision_language", "is_vision_language", "visual_token_ids"]

_TOKEN_KEYS = ("image_token_id", "image_token_index", "video_token_id", "video_token_index")


def visual_token_ids(config: Any) -> tuple[int, ...]:
    """The ids of image and video placeholder tokens named in a model config."""
    ids = {getattr(config, k, None) for k in _TOKEN_KEYS}
    return tuple(sorted(i for i in ids if isinstance(i, int) and not isinstance(i, bool)))


def is_vision_language(config: Any) -> bool:
    return getattr(config, "vision_config", None) is not None or bool(visual_token_ids(config))


@dataclass
class VisionLanguage:
    """family: the config's model_type; language_model: the text decoder, called with the
    merged ``inputs_embeds``; token_ids: the visual placeholder ids."""

    family: str
    language_model: nn.Module
    token_ids: tuple[int, ...]

    def visual_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = torch.tensor(self.token_ids, device=input_ids.device)
        return torch.isin(input_ids, ids)


def _unsupported(family: str, why: str) -> ValueError:
    return ValueError(f"symnoise cannot put noise on the {family!r} vision-language family: "
                      f"{why}. Supported: families whose text decoder holds the input "
                      "embeddings and receives the merged inputs_embeds (LLaVA, Qwen2-VL, "
                      "Qwen2.5-VL, Gemma 3, Idefics 3, SmolVLM)")


def find_vision_language(model: nn.Module, embedding: nn.Module) -> VisionLanguage | None:
    """The model's :class:`VisionLanguage`, None for a text-only model; ValueError naming the
    family when it is vision-language but has no point after the merge to noise."""
    config = getattr(model, "config", None)
    if not is_vision_language(config):
        return None
    family = str(getattr(config, "model_type", type(model).__name__))
    ids = visual_token_ids(config)
    if not ids:
        raise _unsupported(family, "its config names no image token id")
    parent = next((m for m in model.modules() if any(c is embedding for c in m.children())), None)
    own = getattr(parent, "config", None)
    if parent is None or own is None or own is config or \
            getattr(own, "model_type", None) == getattr(config, "model_type", None):
        raise _unsupported(family, "its input embeddings are not held by a text-only decoder")
    if "inputs_embeds" not in inspect.signature(parent.forward).parameters:
        raise _unsupported(family, f"its decoder {type(parent).__name__} takes no inputs_embeds")
    return VisionLanguage(family, parent, ids)
