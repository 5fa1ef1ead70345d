"""Noise on tiny vision-language models: text tokens by default, visual tokens on request."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from _vlm import llava_batch, make_llava, make_qwen2vl, other_family, qwen_batch, vlm_tokenizer
from conftest import make_model

from symnoise import NoiseConfig, noisy_embeddings, pair_batch
from symnoise.vision import find_vision_language

ALPHA = 5.0


def _setup(family):
    tok = vlm_tokenizer()
    if family in ("gemma3", "idefics3", "smolvlm"):
        return other_family(tok, family)
    if family == "llava":
        model, proc = make_llava(tok)
        return model, llava_batch(tok, proc)
    model, ip = make_qwen2vl(tok, version="2.5" if family == "qwen2_5_vl" else "2")
    return model, qwen_batch(tok, ip)


def _capture(decoder, seen, key):
    """A pre-hook keeping the decoder's inputs_embeds under seen[key] (a list)."""
    def hook(module, args, kwargs):
        seen.setdefault(key, []).append(kwargs["inputs_embeds"].detach().clone())
    return decoder.register_forward_pre_hook(hook, with_kwargs=True)


def _decoder_inputs(model, batch, config):
    """(clean, noised) inputs_embeds of the text decoder for one training forward."""
    decoder = find_vision_language(model, model.get_input_embeddings()).language_model
    seen = {}
    clean = _capture(decoder, seen, "clean")
    model.train()
    with noisy_embeddings(model, config) as handle:
        noised = _capture(decoder, seen, "noised")
        model(**batch)
        noised.remove()
    clean.remove()
    return seen["clean"][0], seen["noised"][0], handle


def _visual(model, ids):
    return find_vision_language(model, model.get_input_embeddings()).visual_mask(ids)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen2_5_vl", "gemma3", "idefics3",
                                    "smolvlm"])
@pytest.mark.parametrize("modality", ["text", "vision"])
def test_noise_only_on_the_chosen_tokens_with_exact_per_sequence_scale(family, modality):
    model, batch = _setup(family)
    cfg = NoiseConfig("bernoulli", ALPHA, norm_match=False, seed=0, noise_on=modality)
    clean, noised, handle = _decoder_inputs(model, batch, cfg)
    visual = _visual(model, batch["input_ids"])
    real = batch["attention_mask"].bool()
    chosen = real & (visual if modality == "vision" else ~visual)
    assert visual.any() and (real & ~visual).any()
    d = clean.shape[-1]
    delta = (noised - clean).abs()
    for i in range(clean.shape[0]):
        n = int(chosen[i].sum())
        if n:  # every element of a chosen token is +-alpha / sqrt(L_i d), L_i its own count
            torch.testing.assert_close(delta[i][chosen[i]], torch.full_like(
                delta[i][chosen[i]], ALPHA / math.sqrt(n * d)), rtol=1e-4, atol=1e-6)
        assert torch.equal(noised[i][~chosen[i]], clean[i][~chosen[i]])  # exactly untouched
    summary = handle.summary()
    other = "text" if modality == "vision" else "vision"
    assert summary[f"{modality}_noise_ratio_mean"] > 0 and summary[f"{other}_noise_ratio_mean"] == 0
    assert summary["noise_on"] == modality


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("modality", ["text", "vision"])
def test_symnoise_concat_rows_sum_to_twice_the_clean_merged_embeddings(family, modality):
    model, batch = _setup(family)
    paired = pair_batch(batch)
    assert paired["pixel_values"].shape[0] == 2 * batch["pixel_values"].shape[0]
    clean, noised, _ = _decoder_inputs(model, paired, NoiseConfig("symnoise", ALPHA, seed=0,
                                                                 noise_on=modality))
    b = batch["input_ids"].shape[0]
    plus, minus = noised[:b], noised[b:]
    assert not torch.allclose(plus, clean[:b])
    torch.testing.assert_close(plus + minus, 2 * clean[:b], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_symnoise_sequential_reuses_delta_with_the_images(family):
    model, batch = _setup(family)
    model.train()
    cfg = NoiseConfig("symnoise", ALPHA, seed=0, symmetric_mode="sequential")
    decoder = find_vision_language(model, model.get_input_embeddings()).language_model
    seen = {}
    with noisy_embeddings(model, cfg) as handle:
        hook = _capture(decoder, seen, "noised")
        for sign in ("plus", "minus"):
            with handle.phase(sign):
                model(**batch).loss.backward()
        hook.remove()
    with torch.no_grad():
        model.eval()
        hook = _capture(decoder, seen, "clean")
        model(**batch)
        hook.remove()
    plus, minus = seen["noised"]
    assert not torch.allclose(plus, seen["clean"][0])
    torch.testing.assert_close(plus + minus, 2 * seen["clean"][0], rtol=1e-5, atol=1e-6)


def test_no_noise_in_eval_mode_or_generation():
    model, batch = _setup("llava")
    model.eval()
    with torch.no_grad():
        ref = model(**batch).logits
    with noisy_embeddings(model, NoiseConfig("uniform", 50.0, seed=0)) as handle, torch.no_grad():
        assert torch.equal(model(**batch).logits, ref)
        out = model.generate(**{k: v for k, v in batch.items() if k != "labels"},
                             max_new_tokens=3, do_sample=False)
        assert out.shape[1] == batch["input_ids"].shape[1] + 3
    assert handle.calls == 0


def test_attach_errors_name_the_problem():
    with pytest.raises(ValueError, match="noise_on='vision' needs a vision-language model"):
        with noisy_embeddings(make_model(), NoiseConfig("uniform", 5.0, noise_on="vision")):
            pass

    class Fused(torch.nn.Module):  # merges and decodes in the module that holds the embeddings
        def __init__(self, **config):
            super().__init__()
            self.config = SimpleNamespace(model_type="fusedvlm", vision_config={}, **config)
            self.embed = torch.nn.Embedding(10, 4)

        def get_input_embeddings(self):
            return self.embed

    for config, why in (({"image_token_id": 7}, "not held by a text-only decoder"),
                        ({}, "names no image token id")):
        with pytest.raises(ValueError, match=f"'fusedvlm' vision-language family: its .*{why}"):
            with noisy_embeddings(Fused(**config), NoiseConfig("uniform", 5.0)):
                pass


@pytest.mark.parametrize("spelling,canonical", [
    ("text", "text"), ("vision", "vision"), ("response+vision", "vision+response"),
    ("Text+Prompt", "text+prompt"), ("all", "all"), ("prompt", "prompt")])
def test_noise_on_spellings(spelling, canonical):
    cfg = NoiseConfig("uniform", 5.0, noise_on=spelling)
    assert cfg.noise_on == canonical


@pytest.mark.parametrize("bad", ["text+vision", "prompt+response", "all+text", "image", ""])
def test_noise_on_bad_spellings_are_refused(bad):
    with pytest.raises(ValueError, match="unknown noise_on"):
        NoiseConfig("uniform", 5.0, noise_on=bad)


@pytest.mark.parametrize("family,mode,sft", [("llava", "concat", False),
                                             ("qwen2_vl", "sequential", False),
                                             ("llava", "concat", True)])
def test_trainer_steps_and_a_clean_checkpoint(family, mode, sft, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig

    from symnoise import NoisySFTTrainer, NoisyTrainer

    model, batch = _setup(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = SFTConfig(output_dir=str(tmp_path / "ckpt"), max_steps=3, learning_rate=1e-2,
                     per_device_train_batch_size=1, report_to=[], save_strategy="no",
                     remove_unused_columns=False, use_cpu=True,
                     dataset_kwargs={"skip_prepare_dataset": True})  # already tokenised
    data = Dataset.from_list([{k: v.tolist() for k, v in batch.items()}] * 3)
    trainer = (NoisySFTTrainer if sft else NoisyTrainer)(
        model=model, args=args, train_dataset=data, processing_class=vlm_tokenizer(),
        noise_config=NoiseConfig(
            "symnoise", ALPHA, symmetric_mode=mode),
        data_collator=lambda rows: {k: torch.tensor(v) for k, v in rows[0].items()})
    trainer.train()
    summary = trainer.noise_summary
    assert summary["noised_forwards"] == 3 * (2 if mode == "sequential" else 1)
    assert summary["text_noise_ratio_mean"] > 0 and summary["vision_noise_ratio_mean"] == 0
    assert summary["vision_family"] == family
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    decoder = find_vision_language(model, model.get_input_embeddings()).language_model
    assert not decoder._forward_pre_hooks and not model._forward_pre_hooks  # hooks gone
    trainer.save_model(str(tmp_path / "out"))
    reloaded = type(model).from_pretrained(str(tmp_path / "out")).state_dict()
    assert set(reloaded) == set(after)
    for key, value in reloaded.items():
        assert torch.equal(value, after[key]), key


def test_a_part_restricts_the_noise_and_l_stays_the_modalitys_count():
    model, batch = _setup("llava")
    cfg = NoiseConfig("bernoulli", ALPHA, norm_match=False, seed=0, noise_on="text+response")
    clean, noised, handle = _decoder_inputs(model, batch, cfg)
    visual = _visual(model, batch["input_ids"])
    text = batch["attention_mask"].bool() & ~visual
    chosen = text & (batch["labels"] != -100)
    assert (text & ~chosen).any() and chosen.any() and (visual & (batch["labels"] != -100)).any()
    delta = (noised - clean).abs()
    for i in range(clean.shape[0]):
        scale = ALPHA / math.sqrt(int(text[i].sum()) * clean.shape[-1])  # L: all text tokens
        torch.testing.assert_close(delta[i][chosen[i]], torch.full_like(
            delta[i][chosen[i]], scale), rtol=1e-4, atol=1e-6)
        assert torch.equal(noised[i][~chosen[i]], clean[i][~chosen[i]])
    assert handle.summary()["vision_noise_ratio_mean"] == 0  # labelled image tokens: none


def test_text_on_a_text_only_model_is_all():
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 2]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    model = make_model().train()
    clean = model(input_ids=ids, attention_mask=mask).logits
    outs = []
    for noise_on in ("all", "text"):
        with noisy_embeddings(model, NoiseConfig("uniform", ALPHA, seed=3, noise_on=noise_on)):
            outs.append(model(input_ids=ids, attention_mask=mask).logits)
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], clean)
