"""Noise on real (tiny) Hugging Face models: hooks, eval mode, checkpoints, Trainer, PEFT."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_model

from symnoise import NoiseConfig, NoisyTrainer, noisy_embeddings, noisy_trainer_class, pair_batch
from symnoise.integration import get_embedding_module

V = 64


def _batch(b=4, length=10, vocab=V, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    if b > 1:
        mask[1, 7:] = 0
    if b > 3:
        mask[3, 4:] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[:, :2] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _capture_embeddings(model):
    seen = []
    emb = get_embedding_module(model)
    # registered before the noise hook? no: registered first, so it runs first. Use a
    # hook on the first decoder layer's input instead, which sees the noised embeddings.
    layer = model.model.layers[0]
    h = layer.register_forward_pre_hook(lambda m, a, k: seen.append(a[0] if a else k["hidden_states"]), with_kwargs=True)
    return seen, h, emb


def test_noise_only_in_training_mode_and_padding_untouched():
    model = make_model(V)
    batch = _batch()
    seen, h, emb = _capture_embeddings(model)
    clean = emb(batch["input_ids"]).detach()
    with noisy_embeddings(model, NoiseConfig("gaussian", 5.0, seed=0)) as handle:
        model.train()
        model(**{k: v for k, v in batch.items() if k != "labels"})
        model.eval()
        model(**{k: v for k, v in batch.items() if k != "labels"})
    h.remove()
    noised, evaluated = seen[0].detach(), seen[1].detach()
    assert handle.calls == 1
    torch.testing.assert_close(evaluated, clean)  # eval mode: no noise at all
    pad = batch["attention_mask"] == 0
    torch.testing.assert_close(noised[pad], clean[pad])  # padding: zero noise
    assert (noised[~pad] - clean[~pad]).abs().min() >= 0  # sanity
    assert not torch.allclose(noised[~pad], clean[~pad])
    # per-sequence norm: mean token noise norm ~ alpha/sqrt(L d) * sqrt(d/3) ... check ratio
    lengths = batch["attention_mask"].sum(1)
    d = clean.shape[-1]
    for i in range(4):
        n = int(lengths[i])
        per_tok = (noised[i, :n] - clean[i, :n]).pow(2).sum(-1).mean().sqrt()
        expected = 5.0 / (n * d) ** 0.5 * (d / 3) ** 0.5  # rms of N(0,1)/sqrt3 per token
        assert per_tok.item() == pytest.approx(expected, rel=0.35)


def test_exit_leaves_no_trace_and_checkpoint_loads_with_plain_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    model = make_model(V)
    before = copy.deepcopy(model.state_dict())
    emb = get_embedding_module(model)
    hooks_before = (len(emb._forward_hooks), len(model._forward_pre_hooks))
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0)):
        assert len(emb._forward_hooks) == hooks_before[0] + 1
    assert (len(emb._forward_hooks), len(model._forward_pre_hooks)) == hooks_before
    assert type(model).forward is type(make_model(V)).forward
    assert set(model.state_dict()) == set(before)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)


def test_concat_requires_paired_batch():
    model = make_model(V)
    model.train()
    batch = _batch(b=3)
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0)):
        with pytest.raises(ValueError, match="paired batch"):
            model(**batch)
        out = model(**pair_batch(batch))
    assert out.logits.shape[0] == 6


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_concat_and_sequential_give_identical_gradients():
    batch = _batch()
    model_a, model_b = make_model(V, seed=1), make_model(V, seed=1)
    for m in (model_a, model_b):
        m.train()
        m.config.attn_implementation = "eager"
    # concat: one forward over [X+d; X-d]
    with noisy_embeddings(model_a, NoiseConfig("symnoise", 5.0, seed=3)):
        model_a(**pair_batch(batch)).loss.backward()
    # sequential: +d pass then -d pass with the same delta, each loss halved
    with noisy_embeddings(model_b, NoiseConfig("symnoise", 5.0, symmetric_mode="sequential", seed=3)) as h:
        with h.phase("plus"):
            (0.5 * model_b(**batch).loss).backward()
        with h.phase("minus"):
            (0.5 * model_b(**batch).loss).backward()
    ga, gb = _grads(model_a), _grads(model_b)
    assert ga.keys() == gb.keys() and len(ga) > 0
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-4, atol=1e-6)
    # and the gradient really differs from an un-noised one
    model_c = make_model(V, seed=1)
    model_c.train()
    model_c(**batch).loss.backward()
    gc = _grads(model_c)
    assert any(not torch.allclose(ga[k], gc[k], atol=1e-6) for k in ga)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n=16, length=10):
        self.items = []
        for i in range(n):
            b = _batch(1, length, seed=i)
            self.items.append({k: v[0] for k, v in b.items()})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _trainer(tmp_path, noise, model=None, cls=None, **kw):
    from transformers import TrainingArguments

    base = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, use_cpu=True,
        dataloader_num_workers=0,
    )
    args = TrainingArguments(**{**base, **kw})
    cls = cls or NoisyTrainer
    return cls(model=model or make_model(V, seed=2), args=args, train_dataset=_Rows(),
               eval_dataset=_Rows(8), noise_config=noise)


def test_trainer_pairs_symnoise_batches(tmp_path):
    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0))
    rows_seen = []
    h = trainer.model.register_forward_pre_hook(
        lambda m, a, k: rows_seen.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    trainer.train()
    h.remove()
    assert rows_seen == [8, 8]  # batch of 4 doubled to [X+d; X-d]
    assert len(trainer.model._forward_pre_hooks) == 0  # hooks gone after train()
    assert all(isinstance(r["loss"], float) for r in trainer.state.log_history if "loss" in r)


def test_trainer_concat_and_sequential_same_first_step(tmp_path):
    results = {}
    for mode in ("concat", "sequential"):
        model = make_model(V, seed=4)
        tr = _trainer(tmp_path / mode, NoiseConfig("symnoise", 5.0, symmetric_mode=mode, seed=9),
                      model=model, max_steps=1, learning_rate=0.0)
        grads = {}
        hooks = [p.register_hook(lambda g, n=n, grads=grads: grads.__setitem__(n, grads.get(n, 0) + g.clone()))
                 for n, p in model.named_parameters()]
        tr.train()
        for h in hooks:
            h.remove()
        results[mode] = grads
    assert results["concat"].keys() == results["sequential"].keys()
    for k in results["concat"]:
        torch.testing.assert_close(results["concat"][k], results["sequential"][k], rtol=1e-4, atol=1e-6)


def test_trainer_evaluate_is_noise_free(tmp_path):
    model = make_model(V, seed=5)
    trainer = _trainer(tmp_path, NoiseConfig("uniform", 50.0), model=model)
    clean = trainer.evaluate()["eval_loss"]
    with noisy_embeddings(model, NoiseConfig("uniform", 50.0)):
        during = trainer.evaluate()["eval_loss"]
    assert during == pytest.approx(clean, abs=1e-6)


@pytest.mark.parametrize("method", ["uniform", "gaussian", "bernoulli"])
def test_trainer_runs_each_method_with_gradient_checkpointing(tmp_path, method):
    trainer = _trainer(tmp_path, NoiseConfig(method, 5.0), gradient_checkpointing=True)
    out = trainer.train()
    assert out.global_step == 2 and out.training_loss > 0


def test_bf16_autocast_symnoise(tmp_path):
    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0), bf16=True)
    out = trainer.train()
    assert out.global_step == 2 and torch.isfinite(torch.tensor(out.training_loss))


def test_peft_lora_model_gets_noise_and_merges_cleanly(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(make_model(V, seed=6), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0), model=model)
    rows_seen = []
    h = get_embedding_module(model).register_forward_hook(lambda m, a, o: rows_seen.append(o.shape[0]))
    trainer.train()
    h.remove()
    assert rows_seen and all(r == 8 for r in rows_seen)
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "merged")


def test_sft_trainer_mixin(tmp_path):
    trl = pytest.importorskip("trl")
    from conftest import make_tokenizer
    from datasets import Dataset

    tok = make_tokenizer()
    tok.pad_token = tok.eos_token
    ds = Dataset.from_list([{"prompt": "sort the numbers one two", "completion": " one two"}] * 8)
    cfg = trl.SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                        report_to=[], use_cpu=True, save_strategy="no", max_length=32)
    cls = noisy_trainer_class(trl.SFTTrainer)
    model = make_model(len(tok), seed=7)
    rows = []
    trainer = cls(model=model, args=cfg, train_dataset=ds, processing_class=tok,
                  noise_config=NoiseConfig("symnoise", 5.0))
    h = model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]), with_kwargs=True)
    trainer.train()
    h.remove()
    assert rows == [8, 8]


def test_model_without_embeddings_is_a_clear_error():
    with pytest.raises(ValueError, match="input embeddings"):
        with noisy_embeddings(torch.nn.Linear(3, 3), NoiseConfig("uniform", 1.0)):
            pass


def test_noise_config_validates():
    with pytest.raises(ValueError, match="-2"):
        NoiseConfig("uniform", -2)
    with pytest.raises(ValueError, match="'both'"):
        NoiseConfig("symnoise", 5, symmetric_mode="both")
    assert NoiseConfig("neftune", 5).method == "uniform"


# -- issue 7: generator, pairing guard, double attach, config, ratios, noise_on, scale ---------


def test_generator_is_made_lazily_on_the_embeddings_device_and_reproduces():
    from symnoise.integration import _rank_seed

    model = make_model(V)
    model.train()
    batch = _batch()
    seen, h, emb = _capture_embeddings(model)
    clean = emb(batch["input_ids"]).detach()
    with noisy_embeddings(model, NoiseConfig("bernoulli", 5.0, seed=11)) as handle:
        assert handle.generator is None  # nothing built at attach time
        model(**batch)
        assert handle.generator is not None
        assert handle.generator.device == clean.device
    h.remove()
    # the draw is the one a generator seeded with the run's seed makes on that device
    g = torch.Generator(device=clean.device).manual_seed(_rank_seed(11))
    from symnoise.noise import perturb

    expected = perturb(clean, batch["attention_mask"], method="bernoulli", alpha=5.0, generator=g)
    torch.testing.assert_close(seen[0].detach(), expected)


def test_generator_state_round_trips_through_state_dict():
    model = make_model(V)
    model.train()
    batch = _batch()
    seen, h, _ = _capture_embeddings(model)
    with noisy_embeddings(model, NoiseConfig("uniform", 5.0, seed=2)) as handle:
        model(**batch)
        state = handle.state_dict()
        model(**batch)
    with noisy_embeddings(model, NoiseConfig("uniform", 5.0, seed=2)) as handle:
        handle.load_state_dict(state)
        model(**batch)
    h.remove()
    torch.testing.assert_close(seen[2], seen[1])  # the restored stream draws the 2nd noise again
    assert not torch.allclose(seen[0], seen[1])
    with noisy_embeddings(model, NoiseConfig("uniform", 5.0, seed=3)) as handle:
        with pytest.raises(ValueError, match="seed 2"):
            handle.load_state_dict(state)


@pytest.mark.parametrize("b", [2, 4])
def test_concat_rejects_unpaired_even_batch(b):
    model = make_model(V)
    model.train()
    batch = _batch(b=b)
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0)):
        with pytest.raises(ValueError, match="pair_batch.*symmetric_mode='sequential'"):
            model(**batch)
        assert model(**pair_batch(batch)).logits.shape[0] == 2 * b


def test_attaching_noise_twice_raises(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = make_model(V)
    with noisy_embeddings(model, NoiseConfig("uniform", 5.0)):
        with pytest.raises(RuntimeError, match="already has symnoise noise"):
            with noisy_embeddings(model, NoiseConfig("uniform", 5.0)):
                pass
        trainer = _trainer(tmp_path, NoiseConfig("uniform", 5.0), model=model)
        with pytest.raises(RuntimeError, match="already has symnoise noise"):
            trainer.train()
    # through a PEFT wrapper: the same embedding module, still one noise
    peft_model = get_peft_model(make_model(V), LoraConfig(r=2, target_modules=["q_proj"]))
    with noisy_embeddings(peft_model, NoiseConfig("uniform", 5.0)):
        with pytest.raises(RuntimeError, match="already has symnoise noise"):
            with noisy_embeddings(peft_model.base_model.model, NoiseConfig("uniform", 5.0)):
                pass
    with noisy_embeddings(model, NoiseConfig("uniform", 5.0)):  # fine again after exit
        pass


def test_trainer_does_not_mutate_the_callers_noise_config(tmp_path):
    cfg = NoiseConfig("symnoise", 5.0)
    before = cfg.to_dict()
    trainer = _trainer(tmp_path, cfg, max_steps=1)
    trainer.train()
    assert cfg.to_dict() == before and cfg.seed is None
    assert trainer.noise_config is cfg


def test_norm_ratios_match_the_formula_on_a_known_embedding():
    """||delta_t|| / ||x_t|| for Bernoulli is alpha/sqrt(3 L) / ||x_t||, exactly."""
    model = make_model(V)
    emb = get_embedding_module(model)
    with torch.no_grad():
        emb.weight.fill_(0.0)
        emb.weight[:, 0] = 2.0  # every token's embedding has norm 2
    model.train()
    batch = _batch()
    lengths = batch["attention_mask"].sum(1).float()
    alpha = 5.0
    expected = (alpha / torch.sqrt(3 * lengths) / 2.0)  # per token of sequence i
    # mean over real tokens: each sequence's tokens weigh by their count
    expected_mean = float((expected * lengths).sum() / lengths.sum())
    with noisy_embeddings(model, NoiseConfig("bernoulli", alpha, seed=0)) as handle:
        for _ in range(25):
            model(**batch)
    assert len(handle.norm_ratios) == 20  # only the first 20 noised forwards are measured
    assert handle.norm_ratios[0] == pytest.approx(expected_mean, rel=1e-5)
    summary = handle.summary()
    assert summary["n_forwards"] == 20 and summary["noised_forwards"] == 25
    assert summary["noise_to_embedding_ratio_mean"] == pytest.approx(expected_mean, rel=1e-5)


def test_trainer_keeps_the_noise_summary(tmp_path):
    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0), max_steps=2)
    trainer.train()
    s = trainer.noise_summary
    assert s["n_forwards"] == 2 and s["noised_forwards"] == 2
    # random-init embeddings (std 0.02 by default in LlamaConfig): ||x_t|| ~ 0.02 sqrt(32)
    assert 0 < s["noise_to_embedding_ratio_mean"] < float("inf")


def _region_batch():
    batch = _batch()  # labels: -100 on positions 0,1 and on padding
    batch["labels"][:, 2:5] = -100  # prompt = positions 0..4
    return batch


@pytest.mark.parametrize("noise_on", ["prompt", "response", "all"])
@pytest.mark.parametrize("mode", ["concat", "sequential", None])
def test_noise_on_regions_get_the_full_length_scale(noise_on, mode):
    method = "bernoulli" if mode is None else "symnoise"
    model = make_model(V)
    model.train()
    batch = _region_batch()
    seen, h, emb = _capture_embeddings(model)
    clean = emb(batch["input_ids"]).detach()
    cfg = NoiseConfig(method, 5.0, seed=0, noise_on=noise_on,
                      symmetric_mode=mode or "concat")
    with noisy_embeddings(model, cfg) as handle:
        if mode == "concat":
            model(**pair_batch(batch))
        elif mode == "sequential":
            with handle.phase("plus"):
                model(**batch)
        else:
            model(**batch)
    h.remove()
    delta = (seen[0].detach()[: clean.shape[0]] - clean).abs()
    mask = batch["attention_mask"].bool()
    prompt = (batch["labels"] == -100) & mask
    response = (batch["labels"] != -100) & mask
    lengths = mask.sum(1, keepdim=True).float()
    full = (5.0 / torch.sqrt(lengths * clean.shape[-1]) / 3**0.5).expand_as(mask)
    noised = {"all": mask, "prompt": prompt, "response": response}[noise_on]
    torch.testing.assert_close(delta.amax(-1)[noised], full[noised], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(delta.amin(-1)[noised], full[noised], rtol=1e-5, atol=1e-7)
    assert delta[~noised].abs().max() == 0
    assert noised.sum() > 0 and (~noised & mask).sum() >= (0 if noise_on == "all" else 1)


def test_noise_on_without_labels_is_a_clear_error():
    model = make_model(V)
    model.train()
    batch = _batch()
    batch.pop("labels")
    with noisy_embeddings(model, NoiseConfig("uniform", 5.0, noise_on="response")):
        with pytest.raises(ValueError, match="noise_on='response' needs the batch's labels"):
            model(**batch)
    with pytest.raises(ValueError, match="'middle'"):
        NoiseConfig("uniform", 5.0, noise_on="middle")


def _first_layer_input(model, batch, cfg):
    seen = []
    layer = model.model.layers[0]
    h = layer.register_forward_pre_hook(
        lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).detach()), with_kwargs=True)
    model.train()
    model(**batch)
    with noisy_embeddings(model, cfg) as handle:
        model(**batch)
    h.remove()
    return seen[0], seen[1], handle


def _family_model(family):
    from transformers import AutoConfig, AutoModelForCausalLM

    common = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=4, head_dim=8,
                  max_position_embeddings=64)
    extra = {"granite": dict(embedding_multiplier=12.0)}.get(family, {})
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(family, **common, **extra))


@pytest.mark.parametrize("family", ["llama", "gemma", "gemma2", "granite"])
def test_noise_goes_on_what_the_first_decoder_layer_receives(family):
    """Whatever the family does to the embeddings (Gemma: *sqrt(d) in a scaled module,
    Granite: *embedding_multiplier in the model forward), the decoder input gets exactly
    the formula's noise: Bernoulli token norm alpha/sqrt(3 L) per token."""
    model = _family_model(family)
    batch = _batch(b=2)
    batch["attention_mask"][:] = 1
    alpha = 5.0
    clean, noised, handle = _first_layer_input(model, batch, NoiseConfig("bernoulli", alpha, seed=0))
    per_token = (noised - clean).float().norm(dim=-1)
    expected = alpha / (3 * batch["input_ids"].shape[1]) ** 0.5
    torch.testing.assert_close(per_token, torch.full_like(per_token, expected), rtol=1e-4, atol=1e-6)
    # the recorded noise-to-embedding ratio is the one the decoder input really has
    at_decoder = (per_token / clean.float().norm(dim=-1)).mean().item()
    assert handle.norm_ratios[0] == pytest.approx(at_decoder, rel=1e-4)


def test_embedding_scale_rule_for_families_that_scale_after_the_module():
    from transformers import LlamaConfig

    from symnoise.integration import embedding_output_scale

    model = make_model(V)
    assert embedding_output_scale(model) == 1.0
    # transformers 4.x Gemma: plain nn.Embedding, the model forward multiplies by sqrt(d)
    model.config = LlamaConfig(hidden_size=32)
    model.config.model_type = "gemma"
    assert embedding_output_scale(model) == pytest.approx(32**0.5)
    gemma = _family_model("gemma")  # transformers 5: the module scales itself
    assert embedding_output_scale(gemma) in (1.0, pytest.approx(32**0.5))
    assert (embedding_output_scale(gemma) == 1.0) == hasattr(get_embedding_module(gemma), "embed_scale")
    assert embedding_output_scale(_family_model("granite")) == 12.0


def test_noise_on_in_trainer_when_compute_loss_pops_the_labels(tmp_path):
    """A Trainer with compute_loss_func pops labels before the forward: the mixin hands them
    to the hook, so noise_on still knows prompt from response."""
    model = make_model(V, seed=8)
    emb = get_embedding_module(model)
    deltas = []
    ids_seen = []
    model.register_forward_pre_hook(lambda m, a, k: ids_seen.append(
        (k["input_ids"], "labels" in k)), with_kwargs=True)
    model.model.layers[0].register_forward_pre_hook(
        lambda m, a, k: deltas.append((a[0] if a else k["hidden_states"]).detach()
                                      - emb(ids_seen[-1][0]).detach()), with_kwargs=True)

    def loss_func(outputs, labels, num_items_in_batch=None):
        return torch.nn.functional.cross_entropy(
            outputs.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)

    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0, noise_on="response"),
                       model=model, max_steps=1, learning_rate=0.0)
    trainer.compute_loss_func = loss_func
    trainer.train()
    assert ids_seen[0][1] is False  # the forward really got no labels
    norms = deltas[0].norm(dim=-1)  # _Rows: one row each, labels -100 on positions 0 and 1
    assert norms.shape == (8, 10)
    assert norms[:, :2].max() == 0 and norms[:, 2:].min() > 0
