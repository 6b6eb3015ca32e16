"""DEITA (dataprobes.selection.deita): the diversity filter against a brute-force
greedy and a port of the reference loop, the scorers and embedders against hand
computations on tiny Hugging Face and TinyGPT models built locally."""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from dataprobes.lm import TinyGPT  # noqa: E402
from dataprobes.selection import (  # noqa: E402
    deita_select,
    diversity_filter,
    expected_score,
    last_token_embeddings,
    mean_pool_embeddings,
)
from dataprobes.selection.deita import (  # noqa: E402
    COMPLEXITY_TEMPLATE,
    QUALITY_TEMPLATE,
    DeitaSelection,
    combined_score,
    complexity_prompt,
    conversation_text,
    digit_token_ids,
    quality_prompt,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deita_reference import reference_filter  # noqa: E402

# ---------------------------------------------------------------------------
# the filter


def unit_rows(emb: np.ndarray) -> np.ndarray:
    """The documented rows: L2-normalised in float64, rounded to float32."""
    e = np.asarray(emb, dtype=np.float64)
    return (e / np.sqrt((e * e).sum(1))[:, None]).astype(np.float32)


def brute_force(emb: np.ndarray, scores: np.ndarray, budget: int | None, thr: float) -> np.ndarray:
    """The greedy rule, one candidate at a time, every cosine in float64."""
    u = unit_rows(emb).astype(np.float64)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if budget is not None and len(kept) == budget:
            break
        if all(float(np.dot(u[i], u[k])) <= thr for k in kept):
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def planted(seed: int, n: int, d: int, dup: float = 0.4, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian rows, a fraction of them noisy copies of others; integer scores (many ties)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, d))
    copies = rng.random(n) < dup
    src = rng.integers(0, n, n)
    e[copies] = e[src[copies]] + noise * rng.normal(size=(int(copies.sum()), d))
    return e.astype(np.float32), rng.integers(0, 4, n).astype(np.float64)


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 80),
    d=st.integers(1, 6),
    thr=st.floats(-0.5, 0.999),
    budget=st.one_of(st.none(), st.integers(1, 90)),
    block=st.sampled_from([1, 2, 7, 64, 1024]),
)
def test_filter_is_the_greedy(seed: int, n: int, d: int, thr: float, budget: int | None, block: int) -> None:
    emb, scores = planted(seed, n, d)
    got = diversity_filter(emb, scores, budget, thr, block_size=block, progress=False)
    assert np.array_equal(got, brute_force(emb, scores, budget, thr))
    # the properties, independently of the brute force
    u = unit_rows(emb).astype(np.float64)
    cos = u[got] @ u[got].T
    assert (cos[np.triu_indices(len(got), 1)] <= thr + 1e-12).all()
    assert (np.diff(scores[got]) <= 0).all()
    feasible = len(brute_force(emb, scores, None, thr))
    assert len(got) == (feasible if budget is None else min(budget, feasible))
    assert got.dtype == np.int64 and len(set(got.tolist())) == len(got)


def test_filter_decides_borderline_pairs_the_same_in_every_block() -> None:
    # pairs whose cosine is within 1e-7 of the threshold: float32 matmuls of
    # different shapes round them either way; the float64 recheck makes every
    # block size agree with the float64 greedy.
    rng = np.random.default_rng(7)
    d, thr = 96, 0.9
    base = rng.normal(size=(60, d))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    rows = [base]
    for eps in (-3e-7, -1e-7, 0.0, 1e-7, 3e-7):
        ortho = rng.normal(size=(60, d))
        ortho -= (ortho * base).sum(1, keepdims=True) * base
        ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
        c = thr + eps
        rows.append(c * base + np.sqrt(1 - c * c) * ortho)
    emb = np.concatenate(rows).astype(np.float32)
    scores = rng.random(len(emb))
    u = unit_rows(emb).astype(np.float64)
    near = np.abs(u @ u.T - thr) < 1e-6
    assert near.sum() > 100  # the case really is borderline
    want = brute_force(emb, scores, None, thr)
    for block in (1, 5, 33, 128, 4096):
        assert np.array_equal(diversity_filter(emb, scores, None, thr, block_size=block, progress=False), want)


@pytest.mark.parametrize("seed", range(4))
def test_filter_equals_reference_port_at_batch_size_1(seed: int) -> None:
    emb, scores = planted(seed, 150, 16, dup=0.5)
    scores = scores + np.random.default_rng(seed).random(150)  # the port's own sort is not stable on ties
    for budget in (1, 20, 150):
        want = reference_filter(emb, scores, budget, 0.9, batch_size=1)
        assert np.array_equal(diversity_filter(emb, scores, budget, 0.9, progress=False), want)


def test_reference_batches_also_reject_against_rejected_candidates() -> None:
    # a (best) is kept; b is too close to a; c is close to b but not to a.
    # One at a time (the DEITA rule, and ours): keep a, reject b, keep c.
    # The reference with batch_size >= 2 puts b and c in one batch and rejects
    # c for its similarity to b, although b was rejected.
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([np.cos(0.4), np.sin(0.4), 0.0])  # cos(a, b) = 0.92
    c = np.array([np.cos(0.8), np.sin(0.8), 0.0])  # cos(b, c) = 0.92, cos(a, c) = 0.70
    emb = np.stack([a, b, c]).astype(np.float32)
    scores = np.array([3.0, 2.0, 1.0])
    ours = diversity_filter(emb, scores, 3, 0.9, progress=False)
    assert ours.tolist() == [0, 2]
    assert reference_filter(emb, scores, 3, 0.9, batch_size=1).tolist() == [0, 2]
    assert reference_filter(emb, scores, 3, 0.9, batch_size=2).tolist() == [0]


def test_ties_by_index_and_budget_beyond_n() -> None:
    emb = np.eye(5, dtype=np.float32)
    scores = np.array([1.0, 2.0, 2.0, 1.0, 2.0])
    assert diversity_filter(emb, scores, 10, progress=False).tolist() == [1, 2, 4, 0, 3]
    assert diversity_filter(emb, scores, 2, progress=False).tolist() == [1, 2]
    same = np.ones((4, 3), dtype=np.float32)  # all identical: only the best survives
    assert diversity_filter(same, np.arange(4.0), None, progress=False).tolist() == [3]


def test_tensor_float64_and_integer_inputs_agree() -> None:
    emb, scores = planted(3, 200, 8)
    want = diversity_filter(emb, scores, 50, 0.8, progress=False)
    assert np.array_equal(
        diversity_filter(torch.from_numpy(emb), torch.from_numpy(scores), 50, 0.8, progress=False), want
    )
    assert np.array_equal(diversity_filter(emb, scores, 50, 0.8, device="cpu", progress=False), want)
    assert np.array_equal(diversity_filter(emb.astype(np.float64), scores.tolist(), 50, 0.8, progress=False), want)
    ints = np.random.default_rng(0).integers(-3, 4, size=(40, 5))
    ints[ints.sum(1) == 0, 0] = 1
    ints[np.abs(ints).sum(1) == 0, 0] = 1
    s = np.arange(40.0)
    assert np.array_equal(
        diversity_filter(ints, s, None, 0.5, progress=False), brute_force(ints.astype(np.float64), s, None, 0.5)
    )


def test_extreme_magnitudes_are_normalised_not_lost() -> None:
    e = np.array([[1e-200, 0.0], [0.0, 1e200], [1e200, 1e200]])
    assert diversity_filter(e, [3.0, 2.0, 1.0], None, 0.5, progress=False).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"scores": [1.0, np.nan, 0.0]}, ValueError, "scores must be finite.*index 1"),
        ({"scores": [1.0, np.inf, 0.0]}, ValueError, "scores must be finite"),
        ({"scores": [1.0, 2.0]}, ValueError, "scores has 2 entries but embeddings has 3"),
        ({"scores": [[1.0, 2.0, 3.0]]}, ValueError, "scores must be 1-D"),
        ({"scores": ["a", "b", "c"]}, TypeError, "scores must be a real numeric"),
        ({"embeddings": [[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]]}, ValueError, "row 1 contains NaN"),
        ({"embeddings": [[1.0, 0.0], [0.0, 1.0], [np.inf, 1.0]]}, ValueError, "row 2 contains NaN or infinity"),
        ({"embeddings": [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]}, ValueError, "row 1 is a zero vector"),
        ({"embeddings": [1.0, 2.0, 3.0]}, ValueError, "embeddings must be 2-D"),
        ({"embeddings": np.zeros((3, 0))}, ValueError, "embeddings must be 2-D"),
        ({"embeddings": [["a", "b"]] * 3}, TypeError, "embeddings must be a real numeric"),
        ({"embeddings": [[1.0, 2.0], [1.0]]}, ValueError, "embeddings must be a rectangular"),
        ({"budget": 0}, ValueError, "budget must be a positive integer"),
        ({"budget": -1}, ValueError, "budget must be a positive integer"),
        ({"budget": 2.0}, TypeError, "budget must be a positive integer"),
        ({"budget": True}, TypeError, "budget"),
        ({"threshold": 1.5}, ValueError, "threshold must lie in"),
        ({"threshold": np.nan}, ValueError, "threshold must be finite"),
        ({"threshold": "0.9"}, TypeError, "threshold"),
        ({"block_size": 0}, ValueError, "block_size"),
        ({"device": 3}, TypeError, "device"),
        ({"device": "nonsense"}, ValueError, "device"),
    ],
)
def test_filter_refuses_bad_input(kwargs: dict, exc: type, match: str) -> None:
    args = {
        "embeddings": np.eye(3, dtype=np.float32),
        "scores": [3.0, 2.0, 1.0],
        "budget": 2,
        "threshold": 0.9,
        "progress": False,
    }
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        diversity_filter(**args)


def test_filter_warns_nothing() -> None:
    emb, scores = planted(11, 300, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diversity_filter(emb, scores, 100, 0.95, progress=False)


# ---------------------------------------------------------------------------
# tiny models and a tokenizer built here (no downloads)

WORDS = (
    "you are a helpful assistant . please identify the complexity quality score of following user query "
    "response corresponding to question ##query: ##complexity: ##quality: #question#: #response#: "
    "what is two plus three it five write poem about sea waves blue"
).split()


def make_tokenizer(padding_side: str = "right", digits: str = "123456") -> transformers.PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2}
    for w in list(digits) + WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", padding_side=padding_side
    )


@pytest.fixture(scope="module")
def tok() -> transformers.PreTrainedTokenizerFast:
    return make_tokenizer()


def gpt2(vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(cfg).eval()


def llama(vocab: int) -> torch.nn.Module:
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def tinygpt(vocab: int) -> TinyGPT:
    torch.manual_seed(2)
    return TinyGPT(vocab_size=vocab, max_len=128, d_model=32, n_layers=2, n_heads=2).eval()


MODELS = {"gpt2": gpt2, "llama": llama, "tinygpt": tinygpt}

PROMPTS = [
    complexity_prompt("what is two plus three"),
    quality_prompt("what is two plus three", "it is five"),
    complexity_prompt("write a poem about the sea"),
    "score",
    quality_prompt("write a poem", "blue waves blue waves blue waves"),
]


def logits_alone(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    x = torch.tensor([ids])
    with torch.no_grad():
        return (model(x) if isinstance(model, TinyGPT) else model(input_ids=x).logits)[0, -1].double()


def hidden_alone(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    x = torch.tensor([ids])
    with torch.no_grad():
        if isinstance(model, TinyGPT):
            return model.hidden(x)[0]
        return model(input_ids=x, output_hidden_states=True).hidden_states[-1][0]


@pytest.mark.parametrize("name", list(MODELS))
def test_expected_score_is_the_softmax_mean_over_the_six_digits(name: str, tok) -> None:
    model = MODELS[name](len(tok))
    got = expected_score(model, tok, PROMPTS, batch_size=2, progress=False)
    digits = [tok.convert_tokens_to_ids(d) for d in "123456"]
    for i, p in enumerate(PROMPTS):
        z = logits_alone(model, tok(p)["input_ids"])[digits].numpy()
        w = np.exp(z - z.max())
        hand = float(np.sum(np.arange(1, 7) * w / w.sum()))
        assert got[i] == pytest.approx(hand, abs=1e-5)
    assert ((got >= 1) & (got <= 6)).all()
    for bs in (1, 5):
        np.testing.assert_allclose(expected_score(model, tok, PROMPTS, batch_size=bs, progress=False), got, atol=1e-5)
    left = make_tokenizer("left")
    np.testing.assert_allclose(expected_score(model, left, PROMPTS, batch_size=3, progress=False), got, atol=1e-5)


def test_digit_ids_come_from_the_tokenizer(tok) -> None:
    assert digit_token_ids(tok) == [3, 4, 5, 6, 7, 8]
    no_six = make_tokenizer(digits="12345")
    with pytest.raises(ValueError, match="no single token for the digit '6'"):
        digit_token_ids(no_six)
    model = gpt2(len(tok))
    with pytest.raises(ValueError, match="no single token"):
        expected_score(model, no_six, PROMPTS, progress=False)
    # explicit ids bypass the lookup
    got = expected_score(model, tok, PROMPTS[:2], digit_ids=[3, 4, 5, 6, 7, 8], progress=False)
    np.testing.assert_allclose(got, expected_score(model, tok, PROMPTS[:2], progress=False))
    with pytest.raises(ValueError, match="6 distinct"):
        expected_score(model, tok, PROMPTS, digit_ids=[3, 3, 5, 6, 7, 8], progress=False)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        expected_score(model, tok, PROMPTS, digit_ids=[3, 4, 5, 6, 7, 10_000], progress=False)


def test_unscorable_prompts_are_reported_never_three(tok) -> None:
    model = tinygpt(len(tok))
    long = " ".join(["blue"] * 200)
    with pytest.raises(
        ValueError, match=r"1 prompt\(s\) cannot be scored: prompts\[1\]: 201 tokens exceed max_length 128"
    ):
        expected_score(model, tok, [PROMPTS[0], long], progress=False)
    with pytest.warns(UserWarning, match=r"prompts\[1\]"):
        got = expected_score(model, tok, [PROMPTS[0], long], errors="nan", progress=False)
    assert np.isfinite(got[0]) and np.isnan(got[1])
    with pytest.raises(ValueError, match="exceed max_length 5"):
        expected_score(model, tok, PROMPTS[:1], max_length=5, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"prompts": "one prompt"}, TypeError, "prompts must be a sequence of strings"),
        ({"prompts": ["a", 3]}, TypeError, r"prompts\[1\] must be a string"),
        ({"prompts": []}, ValueError, "prompts must not be empty"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"errors": "ignore"}, ValueError, "errors must be one of"),
        ({"model": "gpt2"}, TypeError, "model must be"),
    ],
)
def test_expected_score_refuses_bad_input(kwargs: dict, exc: type, match: str, tok) -> None:
    args = {"model": tinygpt(len(tok)), "tokenizer": tok, "prompts": PROMPTS, "progress": False}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        expected_score(**args)


def test_templates_are_the_references() -> None:
    assert complexity_prompt("Q").endswith("##Query: Q  \n##Complexity: ")
    assert quality_prompt("Q", "A").endswith("#Question#:\nQ\n#Response#:\nA \n##Quality: ")
    assert COMPLEXITY_TEMPLATE.startswith("You are a helpful assistant.") and "{output}" in QUALITY_TEMPLATE
    with pytest.raises(TypeError, match="response must be a string"):
        quality_prompt("Q", None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# embeddings


def padded(rows: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(r) for r in rows)
    ids = torch.full((len(rows), t), 0, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(t - len(r), t) if side == "left" else slice(0, len(r))
        ids[i, sl] = torch.tensor(r)
        mask[i, sl] = 1
    return ids, mask


@pytest.mark.parametrize("name", list(MODELS))
def test_embeddings_equal_unpadded_forwards_for_left_and_right_padding(name: str, tok) -> None:
    model = MODELS[name](len(tok))
    rows = [tok(p)["input_ids"] for p in PROMPTS]
    last = np.stack([hidden_alone(model, r)[-1].numpy() for r in rows])
    mean = np.stack([hidden_alone(model, r).mean(0).numpy() for r in rows])
    for side in ("left", "right"):
        ids, mask = padded(rows, side)
        got = last_token_embeddings(model, ids, mask, batch_size=2, progress=False)
        assert got.dtype == np.float32 and got.shape == last.shape
        np.testing.assert_allclose(got, last, atol=1e-5)
        np.testing.assert_allclose(
            mean_pool_embeddings(model, ids, mask, batch_size=3, progress=False), mean, atol=1e-5
        )
    from_text = last_token_embeddings(model, PROMPTS, tokenizer=tok, batch_size=4, progress=False)
    np.testing.assert_allclose(from_text, last, atol=1e-5)
    no_mask = last_token_embeddings(model, torch.tensor([rows[0]]), progress=False)
    np.testing.assert_allclose(no_mask[0], last[0], atol=1e-5)


def test_embeddings_truncate_and_refuse_bad_masks(tok) -> None:
    model = tinygpt(len(tok))
    ids = torch.tensor([[5, 6, 7, 8]])
    trunc = last_token_embeddings(model, ids, max_length=2, progress=False)
    np.testing.assert_allclose(trunc[0], hidden_alone(model, [5, 6])[-1].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="row 0 is not one contiguous run"):
        last_token_embeddings(model, ids, torch.tensor([[1, 0, 1, 1]]), progress=False)
    with pytest.raises(ValueError, match="row 0 has no tokens"):
        last_token_embeddings(model, ids, torch.zeros((1, 4), dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        last_token_embeddings(model, ids, torch.ones((1, 3)), progress=False)
    with pytest.raises(TypeError, match="integer array of token ids"):
        last_token_embeddings(model, torch.ones((1, 3)), progress=False)
    with pytest.raises(TypeError, match="tokenizer is required"):
        mean_pool_embeddings(model, ["what is"], progress=False)


def test_tinygpt_hidden_is_what_the_head_reads() -> None:
    model = tinygpt(20)
    x = torch.randint(0, 20, (3, 9))
    with torch.no_grad():
        torch.testing.assert_close(model.head(model.hidden(x)), model(x))


# ---------------------------------------------------------------------------
# combined score and the pipeline


def test_combined_score_sums_products_over_turns() -> None:
    got = combined_score([[2.0, 3.0], 4.0, np.array([1.5])], [[1.0, 2.0], 0.5, [2.0]])
    np.testing.assert_allclose(got, [2 * 1 + 3 * 2, 4 * 0.5, 1.5 * 2])
    with pytest.raises(ValueError, match="example 0: complexity has 2 turns but quality has 1"):
        combined_score([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="complexity has 1 examples but quality has 2"):
        combined_score([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        combined_score([np.nan], [1.0])
    with pytest.raises(TypeError, match="complexity must be a sequence"):
        combined_score(3.0, [1.0])  # type: ignore[arg-type]


CONVS = [
    [("what is two plus three", "it is five")],
    [("write a poem about the sea", "blue waves"), ("what is two plus three", "five")],
    [("what is two plus three", "it is five")],  # a duplicate of the first
    [("please write a poem", "blue sea waves blue")],
]


def test_deita_select_composes_scorers_embedder_and_filter(tok) -> None:
    scorer, embedder = gpt2(len(tok)), llama(len(tok))
    sel = deita_select(
        3,
        conversations=CONVS,
        complexity_scorer=(scorer, tok),
        quality_scorer=(tinygpt(len(tok)), tok),
        embedder=(embedder, tok),
        threshold=0.99,
        progress=False,
    )
    comp = expected_score(scorer, tok, [complexity_prompt(q) for c in CONVS for q, _ in c], progress=False)
    assert [len(c) for c in sel.complexity] == [1, 2, 1, 1]
    np.testing.assert_allclose(np.concatenate(sel.complexity), comp)
    np.testing.assert_allclose(sel.scores, combined_score(sel.complexity, sel.quality))
    emb = last_token_embeddings(embedder, [conversation_text(c) for c in CONVS], tokenizer=tok, progress=False)
    want = diversity_filter(emb, sel.scores, 3, 0.99, progress=False)
    assert np.array_equal(sel.indices, want)
    assert not {0, 2} <= set(sel.indices.tolist())  # the exact duplicate never survives with its twin
    # any score feeds the filter
    plain = deita_select(2, scores=[0.1, 0.2, 0.3, 0.4], embeddings=np.eye(4), progress=False)
    assert plain.indices.tolist() == [3, 2] and plain.complexity is None
    again = pickle.loads(pickle.dumps(plain))
    assert isinstance(again, DeitaSelection) and again.indices.tolist() == [3, 2]
    with pytest.raises(ValueError, match="give scores="):
        deita_select(2, embeddings=np.eye(4), progress=False)
    with pytest.raises(ValueError, match="give embeddings="):
        deita_select(2, scores=[1.0, 2.0, 3.0, 4.0], conversations=CONVS, progress=False)
    with pytest.raises(TypeError, match=r"conversations\[0\]\[0\] must be an \(instruction, response\) pair"):
        deita_select(2, conversations=[[("only one",)]], scores=[1.0], embeddings=np.eye(1), progress=False)
    with pytest.raises(TypeError, match="embedder must be a"):
        deita_select(2, conversations=CONVS, scores=[1.0, 2.0, 3.0, 4.0], embedder=embedder, progress=False)
