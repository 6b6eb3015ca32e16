"""Memory levels: against a hand-built model that knows exactly the planted
facts, against per-prompt brute force for TinyGPT and Hugging Face GPT-2
(token and text paths), buckets and the exposure table."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import dataprobes as dp
from dataprobes.knowledge import level_exposure_table, memory_buckets, memory_level, normalize_answer

torch = pytest.importorskip("torch")


def world(seed: int = 0) -> dp.FactWorld:
    return dp.FactWorld(13, 3, 5, dp.IID.random(4, seed=seed), statement_prob=0.2, seed=seed)


class Oracle(torch.nn.Module):
    """Knows fact ``f`` under template ``t`` exactly when ``known[f, t]``:
    reads the template from its opener and the fact from subject and relation
    in the prompt, and puts its logits on the object (on another object when
    it does not know). Accepts left-padded ``input_ids`` with an attention
    mask, as a Hugging Face causal LM does."""

    def __init__(self, w: dp.FactWorld, known: np.ndarray) -> None:
        super().__init__()
        self.w, self.known = w, known
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.openers = {w.template(t)[0]: t for t in range(w.num_templates)}
        self.pairs = {(int(s), int(r)): f for f, (s, r, _) in enumerate(w.fact_tokens)}
        self.training = True

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: object) -> object:
        w = self.w
        b, length = input_ids.shape
        logits = torch.zeros(b, length, w.vocab_size)
        objs = w.token_ranges["objects"]
        for i, row in enumerate(input_ids.tolist()):
            if attention_mask is not None:
                row = [x for x, m in zip(row, attention_mask[i].tolist(), strict=True) if m]
            t = next(self.openers[x] for x in row if x in self.openers)
            subj = next(x for x in row if x in w.token_ranges["subjects"])
            rel = next(x for x in row if x in w.token_ranges["relations"])
            f = self.pairs[(subj, rel)]
            obj = int(w.fact_tokens[f, 2])
            if not self.known[f, t]:
                obj = objs.start + (obj - objs.start + 1) % len(objs)
            logits[i, -1, obj] = 5.0
        return SimpleNamespace(logits=logits) if attention_mask is not None else logits


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_levels_of_a_model_that_knows_the_planted_facts(batch_size: int) -> None:
    w = world(1)
    rng = np.random.default_rng(0)
    known = rng.random((w.num_facts, w.num_templates)) < np.linspace(0.0, 1.0, w.num_facts)[:, None]
    oracle = Oracle(w, known)
    levels, hits = memory_level(oracle, w, batch_size=batch_size, progress=False, return_hits=True)
    np.testing.assert_array_equal(hits, known)
    np.testing.assert_array_equal(levels, known.sum(1) / w.num_templates)
    assert oracle.training  # the mode is restored
    sub = memory_level(oracle, w, [3, 1], facts=[7, 2], context=[0, 1, 2], progress=False, batch_size=batch_size)
    np.testing.assert_array_equal(sub, known[[7, 2]][:, [3, 1]].mean(1))


def test_levels_of_partial_knowledge_planted_by_coverage() -> None:
    """A model that knows each fact exactly under the templates it is stated
    under (the world's coverage) has level ``k_f / T``."""
    w = dp.FactWorld(
        13,
        3,
        5,
        dp.IID.random(4, seed=2),
        statement_prob=0.2,
        seed=2,
        template_coverage=[1, 2, 3, 4, 5] * 2 + [2, 3, 1],
    )
    levels, hits = memory_level(Oracle(w, np.asarray(w.template_mask)), w, progress=False, return_hits=True)
    np.testing.assert_array_equal(hits, w.template_mask)
    np.testing.assert_array_equal(levels, np.array([1, 2, 3, 4, 5] * 2 + [2, 3, 1]) / 5)


def test_text_path_with_the_planted_model() -> None:
    tok = word_tokenizer(world(2))
    w = world(2)
    known = np.random.default_rng(1).random((w.num_facts, w.num_templates)) < 0.5
    levels, hits = memory_level(Oracle(w, known), w, tokenizer=tok, batch_size=7, progress=False, return_hits=True)
    np.testing.assert_array_equal(hits, known)


def word_tokenizer(w: dp.FactWorld) -> object:
    """A word-level Hugging Face tokenizer whose ids are the world's tokens (no download)."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {word: i for i, word in enumerate(w.words)}
    vocab["<pad>"] = len(vocab)
    model = tokenizers.models.WordLevel(vocab, unk_token="<pad>")
    tk = tokenizers.Tokenizer(model)
    tk.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tk.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>")


def test_tinygpt_matches_per_prompt_argmax() -> None:
    from dataprobes.lm import TinyGPT

    w = world(3)
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=w.vocab_size, max_len=32, d_model=16, n_layers=1, n_heads=2)
    levels, hits = memory_level(model, w, batch_size=5, progress=False, return_hits=True)
    with torch.no_grad():
        for f in range(w.num_facts):
            for t in range(w.num_templates):
                x = torch.as_tensor(w.prompt(f, t).astype(np.int64))[None]
                assert hits[f, t] == (int(model(x)[0, -1].argmax()) == int(w.fact_tokens[f, 2]))
    assert levels.dtype == np.float64


def gpt2(vocab_size: int, seed: int) -> object:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():  # spread the random logits so that greedy choices vary between prompts
        model.lm_head.weight.mul_(40.0)
    return model.eval()


def test_hf_gpt2_token_path_matches_per_prompt_argmax() -> None:
    w = world(4)
    model = gpt2(w.vocab_size, 0)
    hits = memory_level(model, w, batch_size=8, progress=False, return_hits=True)[1]
    with torch.no_grad():
        for f in range(w.num_facts):
            for t in range(w.num_templates):
                x = torch.as_tensor(w.prompt(f, t).astype(np.int64))[None]
                assert hits[f, t] == (int(model(x).logits[0, -1].argmax()) == int(w.fact_tokens[f, 2]))


def test_hf_gpt2_text_path_matches_unbatched_generate() -> None:
    w = world(5)
    tok = word_tokenizer(w)
    model = gpt2(len(w.words) + 1, 1)
    # multi-word objects and user templates (with and without an {object} slot)
    triples = [(s, r, f"{o} {w.words[i % 4]}") for i, (s, r, o) in enumerate(w.text_facts())]
    templates = [w.text_templates()[0], "{subject} {relation}", "{relation} of {subject} : {object} ."]
    tok_words = set(w.words)
    templates[2] = templates[2].replace("of", w.words[0]).replace(":", w.words[1]).replace(" .", "")
    assert all(x in tok_words or "{" in x for t in templates for x in t.split())
    hits = memory_level(model, triples, templates, tokenizer=tok, batch_size=6, progress=False, return_hits=True)[1]
    decided = 0
    for i, (s, r, o) in enumerate(triples):
        for j, tpl in enumerate(templates):
            prompt = tpl.partition("{object}")[0].rstrip().format(subject=s, relation=r)
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            n = len(tok(prompt + " " + o)["input_ids"]) - ids.shape[1]
            assert n == 2
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
            text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            assert hits[i, j] == (normalize_answer(text) == normalize_answer(o))
            decided += 1
    assert decided == hits.size


def test_text_path_finds_answers() -> None:
    """A text 'model' that always continues with the right words: every level is 1."""
    w = world(6)
    tok = word_tokenizer(w)
    known = np.ones((w.num_facts, w.num_templates), dtype=bool)
    assert (memory_level(Oracle(w, known), w, tokenizer=tok, progress=False) == 1.0).all()
    assert normalize_answer("  Paris. ") == normalize_answer("paris")


def test_memory_level_bad_inputs() -> None:
    w = world(7)
    model = Oracle(w, np.ones((w.num_facts, w.num_templates), dtype=bool))
    with pytest.raises(TypeError, match="world_or_facts must be a FactWorld"):
        memory_level(model, [("a", "b", "c")], progress=False)
    with pytest.raises(ValueError, match="templates must be template ids"):
        memory_level(model, w, [9], progress=False)
    with pytest.raises(TypeError, match="templates must be"):
        memory_level(model, w, "{subject}", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        memory_level(model, w, batch_size=0)
    with pytest.raises(ValueError, match="facts must"):
        memory_level(model, w, facts=[99], progress=False)
    with pytest.raises(ValueError, match="context"):
        memory_level(model, w, context=[w.vocab_size], progress=False)
    tok = word_tokenizer(w)
    with pytest.raises(ValueError, match="templates are required"):
        memory_level(model, [("a", "b", "c")], tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match=r"\{subject\}"):
        memory_level(model, [("a", "b", "c")], ["{relation} is"], tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="only"):
        memory_level(model, [("a", "b", "c")], ["{subject} {bad}"], tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="triple"):
        memory_level(model, [("a", "b")], ["{subject}"], tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="not be empty"):
        memory_level(model, [], ["{subject}"], tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="object must not be empty"):
        memory_level(model, [("a", "b", " . ")], ["{subject}"], tokenizer=tok, progress=False)


@given(st.integers(1, 30), st.data())
def test_default_buckets_match_exact_fractions(num_templates: int, data: st.DataObject) -> None:
    ks = data.draw(st.lists(st.integers(0, num_templates), min_size=1, max_size=40))
    levels = np.array(ks) / num_templates
    got = memory_buckets(levels)
    for k, b in zip(ks, got, strict=True):
        frac = Fraction(k, num_templates)
        assert b == min(int(frac * 5), 4)  # floor(5 k / T), level 1 in the top bucket


def test_buckets_custom_edges_and_bad_inputs() -> None:
    np.testing.assert_array_equal(memory_buckets([0.0, 0.5, 0.49, 1.0], edges=[0, 0.5, 1]), [0, 1, 0, 1])
    np.testing.assert_array_equal(memory_buckets([0.3], edges=[0.0, 0.3, 0.6, 1.0]), [1])
    for bad, err in (([], ValueError), ([np.nan], ValueError), ([1.2], ValueError), ([[0.1]], ValueError)):
        with pytest.raises(err, match="levels"):
            memory_buckets(bad)
    with pytest.raises(TypeError, match="levels"):
        memory_buckets(["a"])
    with pytest.raises(ValueError, match="edges"):
        memory_buckets([0.1], edges=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="edges"):
        memory_buckets([0.1], edges=[0.0])


def test_level_exposure_table() -> None:
    rng = np.random.default_rng(0)
    exposure = rng.pareto(1.0, 200)
    levels = np.clip(np.round(np.log1p(exposure) + rng.normal(0, 0.3, 200), 1) / 4, 0, 1)
    rep = level_exposure_table(levels, exposure, num_quantiles=4)
    assert rep.spearman == pytest.approx(stats.spearmanr(exposure, levels).statistic, abs=1e-12)
    np.testing.assert_allclose(rep.table.sum(1), 1.0)
    assert np.all(np.diff(rep.mean_level) > 0) and rep.table.shape == (4, 5)
    flat = level_exposure_table(np.zeros(10), np.arange(10.0), num_quantiles=2)
    assert flat.constant and flat.spearman == 0.0
    with pytest.raises(ValueError, match="exposure"):
        level_exposure_table([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="num_quantiles"):
        level_exposure_table([0.1, 0.2], [1.0, 2.0], num_quantiles=3)


def test_import_without_torch() -> None:
    code = "import sys, dataprobes, dataprobes.knowledge; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
