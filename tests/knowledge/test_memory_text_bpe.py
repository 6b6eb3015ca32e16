"""The text path of memory_level with a real byte-level BPE tokenizer (trained
here on the world's text, no download): names split into several tokens and
the space before an object merges into its first token. Checked against an
oracle that knows exactly the planted (fact, template) pairs, against
unbatched greedy generation of a config-built GPT-2, and for the model's
context limit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import dataprobes as dp
from dataprobes.knowledge import memory_level, normalize_answer

torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")


def world(seed: int = 0) -> dp.FactWorld:
    return dp.FactWorld(13, 3, 5, dp.IID.random(4, seed=seed), statement_prob=0.2, seed=seed)


def bpe_tokenizer(w: dp.FactWorld, vocab_size: int = 300) -> object:
    """A byte-level BPE trained on the world's text: 256 bytes, 2 specials and
    few merges, so most names take several tokens."""
    statements = [t.format(subject=s, relation=r, object=o) for s, r, o in w.text_facts() for t in w.text_templates()]
    text = list(w.render_text(w.sample(40, 30, seed=1))) + statements
    tk = tokenizers.Tokenizer(tokenizers.models.BPE())
    tk.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(text, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")


def prompt_of(template: str, s: str, r: str) -> str:
    return template.partition("{object}")[0].rstrip().format(subject=s, relation=r)


def sep_of(template: str) -> str:
    head, found, _ = template.partition("{object}")
    return head[len(head.rstrip()) :] if found else " "


class StatementOracle(torch.nn.Module):
    """Knows the statements of the planted (fact, template) pairs: decodes the
    unpadded prefix and, when it is a token prefix of a known statement at or
    past the prompt, puts all mass on the statement's next BPE token; any
    other prefix (an unknown pair, or past a statement's end) gets a junk
    word token. Returns ``.logits`` like a Hugging Face causal LM."""

    def __init__(self, tok, triples, templates, known):
        super().__init__()
        self.tok = tok
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.junk = tok(" zu")["input_ids"][0]
        self.next: dict[str, int] = {}
        for i, (s, r, o) in enumerate(triples):
            for j, tpl in enumerate(templates):
                if not known[i, j]:
                    continue
                prompt = prompt_of(tpl, s, r)
                full = tok(prompt + sep_of(tpl) + o)["input_ids"]
                p = tok(prompt)["input_ids"]
                start = next((k for k, (a, b) in enumerate(zip(p, full)) if a != b), len(p))
                for m in range(start, len(full)):
                    key = tok.decode(full[:m])
                    assert self.next.setdefault(key, full[m]) == full[m]
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        self.calls += 1
        b, length = input_ids.shape
        logits = torch.zeros(b, length, len(self.tok))
        for i, row in enumerate(input_ids.tolist()):
            keep = [x for x, m in zip(row, attention_mask[i].tolist(), strict=True) if m]
            logits[i, -1, self.next.get(self.tok.decode(keep), self.junk)] = 10.0
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def w():
    return world(0)


@pytest.fixture(scope="module")
def tok(w):
    return bpe_tokenizer(w)


def test_the_tokenizer_splits_names_and_merges_leading_spaces(w, tok):
    objects = sorted({o for _, _, o in w.text_facts()})
    in_context = [tok.tokenize(" " + o) for o in objects]
    alone = [tok.tokenize(o) for o in objects]
    assert max(len(t) for t in in_context) >= 3  # multi-token objects
    assert any(a != [x.lstrip("Ġ") for x in c] for a, c in zip(alone, in_context, strict=True))  # merges differ
    assert all(c[0].startswith("Ġ") for c in in_context)  # the space belongs to the first token


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_levels_equal_the_planted_fraction(w, tok, batch_size):
    triples = w.text_facts()
    templates = w.text_templates()
    rng = np.random.default_rng(3)
    known = np.zeros((len(triples), len(templates)), dtype=bool)
    facts = rng.choice(len(triples), size=len(triples) * 2 // 3, replace=False)
    for f in facts:  # a chosen subset of facts x a per-fact subset of templates
        known[f, rng.random(len(templates)) < 0.6] = True
    oracle = StatementOracle(tok, triples, templates, known)
    levels, hits = memory_level(oracle, w, tokenizer=tok, batch_size=batch_size, progress=False, return_hits=True)
    np.testing.assert_array_equal(hits, known)
    np.testing.assert_array_equal(levels, known.sum(1) / len(templates))


def test_multi_token_objects_and_user_templates(w, tok):
    base = w.text_facts()
    names = sorted({o for _, _, o in base})
    # multi-word objects (several BPE tokens each, some with a merged leading space)
    triples = [(s, r, f"{o} {names[i % len(names)]}") for i, (s, r, o) in enumerate(base)]
    templates = [
        w.text_templates()[1],
        "{subject} {relation}",  # no {object}: it follows after a space
        "{relation} of {subject}:{object}",  # no space: the object's first token has none
        "{subject} {relation} is  {object} .",  # two spaces before the object
    ]
    n_tokens = [
        len(tok(prompt_of(t, s, r) + sep_of(t) + o)["input_ids"]) - len(tok(prompt_of(t, s, r))["input_ids"])
        for s, r, o in triples
        for t in templates
    ]
    assert min(n_tokens) >= 2 and max(n_tokens) >= 5
    known = np.random.default_rng(5).random((len(triples), len(templates))) < 0.5
    oracle = StatementOracle(tok, triples, templates, known)
    levels, hits = memory_level(
        oracle, triples, templates, tokenizer=tok, batch_size=7, progress=False, return_hits=True
    )
    np.testing.assert_array_equal(hits, known)
    np.testing.assert_array_equal(levels, known.mean(1))
    sub = memory_level(oracle, triples, templates[2:], tokenizer=tok, facts=[4, 0], progress=False)
    np.testing.assert_array_equal(sub, known[[4, 0]][:, 2:].mean(1))


def test_object_merging_into_the_prompt(tok):
    """A template with no space before {object} where the prompt's last
    characters and the object merge into one token ("Ga" + "re" -> "ĠGare"):
    the prompt is cut back to the common token prefix."""
    triples = [("Tovu", "pedi", "re"), ("Kumi", "pedi", "re"), ("Kumi", "tivi", "va")]
    templates = ["{subject} {relation} Ga{object}", "zu {subject} {relation} Nize{object}"]
    statement = tok.tokenize("Tovu pedi Gare")
    assert statement[-1] == "ĠGare" and tok.tokenize("Tovu pedi Ga")[-1] != "ĠGare"  # a real merge
    known = np.array([[True, False], [False, True], [True, True]])
    oracle = StatementOracle(tok, triples, templates, known)
    hits = memory_level(oracle, triples, templates, tokenizer=tok, batch_size=2, progress=False, return_hits=True)[1]
    np.testing.assert_array_equal(hits, known)


class AppendsEos:
    """A tokenizer whose encoding appends an EOS (a T5-style post-processor)."""

    def __init__(self, tok):
        self.tok = tok
        self.pad_token_id, self.eos_token_id = tok.pad_token_id, tok.eos_token_id

    def __call__(self, text, add_special_tokens=True):
        ids = self.tok(text)["input_ids"]
        return {"input_ids": ids + [self.eos_token_id] if add_special_tokens else ids}

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def __len__(self):
        return len(self.tok)


def test_an_appended_eos_is_not_part_of_the_prompt(w, tok):
    triples, templates = w.text_facts()[:6], w.text_templates()[:3]
    known = np.random.default_rng(7).random((6, 3)) < 0.5
    oracle = StatementOracle(tok, triples, templates, known)
    hits = memory_level(oracle, triples, templates, tokenizer=AppendsEos(tok), progress=False, return_hits=True)[1]
    np.testing.assert_array_equal(hits, known)


def gpt2(vocab_size: int, n_positions: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():  # spread the random logits so that greedy choices vary between prompts
        model.lm_head.weight.mul_(40.0)
    return model.eval()


def test_gpt2_with_bpe_end_to_end(w, tok):
    model = gpt2(len(tok))
    levels, hits = memory_level(model, w, tokenizer=tok, batch_size=8, progress=False, return_hits=True)
    assert levels.shape == (w.num_facts,) and ((levels >= 0) & (levels <= 1)).all()
    again = memory_level(model, w, tokenizer=tok, batch_size=3, progress=False, return_hits=True)[1]
    np.testing.assert_array_equal(again, hits)  # deterministic, whatever the batching
    # against unbatched greedy generation, one prompt at a time
    for i, (s, r, o) in enumerate(w.text_facts()[:5]):
        for j, tpl in enumerate(w.text_templates()):
            prompt = prompt_of(tpl, s, r)
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            n = len(tok(prompt + " " + o)["input_ids"]) - ids.shape[1]
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
            text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            assert hits[i, j] == (normalize_answer(text) == normalize_answer(o))


def test_prompt_past_the_context_names_template_fact_and_n_positions(w, tok):
    model = gpt2(len(tok), n_positions=24)
    triples = w.text_facts()
    long_template = "zu {subject} " + "sunu " * 8 + "{relation} {object}"
    lengths = [len(tok(prompt_of(long_template, s, r) + " " + o)["input_ids"]) - 1 for s, r, o in triples]
    first = next(i for i, n in enumerate(lengths) if n > 24)
    with pytest.raises(
        ValueError, match=rf"templates\[1\] with fact {first} .*n_positions = 24.*shorten templates\[1\]"
    ):
        memory_level(model, triples, ["{subject} {relation} {object}", long_template], tokenizer=tok, progress=False)
    cfg = SimpleNamespace(max_position_embeddings=24)
    oracle = StatementOracle(tok, triples, [long_template], np.ones((len(triples), 1), dtype=bool))
    oracle.config = cfg
    with pytest.raises(ValueError, match=r"max_position_embeddings = 24"):
        memory_level(oracle, triples, [long_template], tokenizer=tok, progress=False)


def test_rows_that_fit_are_not_pushed_past_the_context_by_batching(tok):
    """A long prompt with a short object batched with a short prompt and a
    long object: each fits the context, the batch's steps would push the
    first past it without clamping its (unused) positions."""
    triples = [("Pituzi " * 5 + "Tovu", "pedi", "Gare"), ("Tovu", "pedi", "Nizeva Pituzi Poti Nizeva")]
    template = ["{subject} {relation} {object}"]
    p = [len(tok(prompt_of(template[0], s, r))["input_ids"]) for s, r, _ in triples]
    n = [len(tok(prompt_of(template[0], s, r) + " " + o)["input_ids"]) - q for (s, r, o), q in zip(triples, p)]
    limit = max(q + k - 1 for q, k in zip(p, n))
    assert p[0] + n[1] - 1 > limit  # the batch would overflow
    model = gpt2(len(tok), n_positions=limit)
    both = memory_level(model, triples, template, tokenizer=tok, batch_size=2, progress=False, return_hits=True)
    single = memory_level(model, triples, template, tokenizer=tok, batch_size=1, progress=False, return_hits=True)
    np.testing.assert_array_equal(both[1], single[1])
