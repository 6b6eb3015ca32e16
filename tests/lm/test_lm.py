"""Probing language models: datasets, TinyGPT, exact diagnostics, the demo."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dataprobes as dp  # noqa: E402
from dataprobes.lm import (  # noqa: E402
    ProbeDataset,
    ProbeTensorDataset,
    TinyGPT,
    excess_loss,
    generate,
    generation_typicality,
    self_typicality,
    train,
)


class TrueMarkovModel:
    """Outputs the true order-1 conditionals as logits (independent of the library's code)."""

    def __init__(self, chain: dp.MarkovChain) -> None:
        self.logp = torch.tensor(np.log(chain.transition))

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logp[idx]


class UniformModel:
    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*idx.shape, self.vocab)


# ---------------------------------------------------------------- excess loss


def test_true_model_has_zero_excess_loss() -> None:
    chain = dp.MarkovChain.random(20, entropy_rate=1.8, seed=0)
    x = chain.sample(50, 40, seed=1)
    ex = excess_loss(TrueMarkovModel(chain), chain, x)
    assert np.abs(ex.kl_per_position).max() < 1e-12
    np.testing.assert_allclose(ex.model_nll_per_position, ex.true_nll_per_position, atol=1e-12)


def test_true_model_zero_excess_for_in_context_and_mixture_probes() -> None:
    for process in [
        dp.InContextMarkov(6, 1, 0.5),
        dp.Mixture([dp.MarkovChain.random(6, seed=1), dp.IID.random(6, seed=2)]),
    ]:
        x = process.sample(8, 30, seed=3)
        pred = torch.tensor(process.predictive(x))

        def model(idx: torch.Tensor, pred: torch.Tensor = pred) -> torch.Tensor:
            return torch.log(pred[: idx.shape[0], 1 : idx.shape[1] + 1])

        ex = excess_loss(model, process, x, batch_size=8)
        assert np.abs(ex.kl_per_position).max() < 1e-10


@pytest.mark.parametrize(
    "process",
    [
        dp.IID.random(30, seed=0),
        dp.MarkovChain.random(30, entropy_rate=2.0, seed=1),
        dp.MarkovChain.random(30, order=3, seed=2),
    ],
    ids=["iid", "markov", "markov-order3"],
)
def test_uniform_model_excess_is_log_v_minus_h(process: dp.Process) -> None:
    x = process.sample(400, 64, seed=2)
    ex = excess_loss(UniformModel(30), process, x)
    # exact identity at every position: KL(P || U) = log V - H(P)
    np.testing.assert_allclose(ex.kl_per_position, math.log(30) - ex.true_entropy_per_position, atol=1e-12)
    # and on average it is log V - entropy rate (exactly for i.i.d., in expectation for Markov)
    # past the initial block (whose conditionals are not the chain's rows)
    skip = max(getattr(process, "order", 1) - 1, 0)
    kl = ex.kl_per_position[skip:].mean()
    se = ex.kl_per_sequence.std(ddof=1) / math.sqrt(len(ex.kl_per_sequence))
    assert abs(kl - (math.log(30) - float(process.entropy_rate()))) <= 4 * se + 1e-12


def test_score_first_and_order_k_positions() -> None:
    """With score_first, position 0 is scored against a uniform prediction;
    inside the initial block of an order-3 chain the truth is the initial
    law's conditional (checked against the process's own predictive)."""
    chain = dp.MarkovChain.random(5, order=3, seed=4)
    x = chain.sample(30, 9, seed=0)
    ex = excess_loss(UniformModel(5), chain, x, score_first=True)
    pred = chain.predictive(x)
    h = -(pred * np.log(pred)).sum(-1).mean(0)
    np.testing.assert_allclose(ex.true_entropy_per_position, h, atol=1e-12)
    np.testing.assert_allclose(ex.kl_per_position, math.log(5) - h, atol=1e-12)
    assert ex.first_position == 0 and ex.kl_per_position.shape == (9,)


def test_excess_loss_errors() -> None:
    chain = dp.MarkovChain.random(10, seed=0)
    x = chain.sample(2, 8, seed=0)
    with pytest.raises(ValueError, match="model outputs 11 logits"):
        excess_loss(UniformModel(11), chain, x)
    with pytest.raises(ValueError, match="tokens must lie in"):
        excess_loss(UniformModel(10), chain, x + 10)
    with pytest.raises(ValueError, match="length >= 2"):
        excess_loss(UniformModel(10), chain, x[:, :1])
    with pytest.raises(TypeError, match="model must be"):
        excess_loss(42, chain, x)


# ---------------------------------------------------------------- datasets


def _collect(ds: ProbeDataset, workers: int) -> list[torch.Tensor]:
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return list(loader)


def test_stream_is_deterministic_and_disjoint_across_workers_and_ranks() -> None:
    p = dp.MarkovChain.random(16, seed=0)
    single = _collect(ProbeDataset(p, 12, 4, seed=5, num_batches=12), 0)
    assert len(single) == 12
    np.testing.assert_array_equal(torch.cat(single).numpy(), p.sample(48, 12, seed=5))
    seen = {}
    for rank in range(2):
        ds = ProbeDataset(p, 12, 4, seed=5, num_batches=12, rank=rank, world_size=2)
        for b, batch in zip(ds.batch_indices(), _collect(ds, 0)):
            assert b not in seen
            seen[b] = batch
    assert sorted(seen) == list(range(12))
    for b, batch in seen.items():
        assert torch.equal(batch, single[b])
    # DataLoader workers split each rank's batches further, still without overlap
    multi = _collect(ProbeDataset(p, 12, 4, seed=5, num_batches=12), 2)
    assert sorted(t.numpy().tobytes() for t in multi) == sorted(t.numpy().tobytes() for t in single)


def test_map_style_dataset() -> None:
    p = dp.IID.random(7, seed=0)
    ds = ProbeTensorDataset(p, 10, 5, seed=3)
    assert len(ds) == 10 and ds[4].dtype == torch.int64
    np.testing.assert_array_equal(ds[4].numpy(), p.sample(10, 5, seed=3)[4])
    with pytest.raises(ValueError, match="num_sequences must be >= 1"):
        ProbeTensorDataset(p, 0, 5)


# ---------------------------------------------------------------- generation


def test_generation_controls() -> None:
    torch.manual_seed(0)
    m = TinyGPT(vocab_size=20, max_len=40, d_model=16, n_layers=1, n_heads=2).eval()
    prompt = np.array([[1, 2], [3, 4]])
    greedy = generate(m, prompt, 10, temperature=0)
    assert torch.equal(generate(m, prompt, 10, temperature=1.0, top_k=1, seed=4), greedy)
    assert torch.equal(generate(m, prompt, 10, temperature=0.7, top_p=1e-9, seed=4), greedy)
    assert torch.equal(generate(m, prompt, 10, seed=9), generate(m, prompt, 10, seed=9))
    assert torch.equal(greedy[:, :2], torch.tensor(prompt))
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(m, prompt, 3, temperature=-1)
    with pytest.raises(ValueError, match="top_p must lie in"):
        generate(m, prompt, 3, top_p=0)


def test_generation_does_not_depend_on_batching() -> None:
    chain = dp.MarkovChain.random(9, entropy_rate=1.2, seed=5)
    model = TrueMarkovModel(chain)
    prompt = chain.sample(10, 1, seed=1)
    whole = generate(model, prompt, 30, seed=3)
    for lo, hi in ((0, 3), (3, 4), (4, 10)):
        assert torch.equal(generate(model, prompt[lo:hi], 30, seed=3, first_row=lo), whole[lo:hi])
    assert not torch.equal(generate(model, prompt, 30, seed=4), whole)
    a = generation_typicality(model, chain, num_sequences=20, length=16, temperatures=(1.0,), seed=2, batch_size=3)
    b = generation_typicality(model, chain, num_sequences=20, length=16, temperatures=(1.0,), seed=2, batch_size=20)
    np.testing.assert_array_equal(a[0].tokens, b[0].tokens)
    with pytest.raises(ValueError, match="first_row"):
        generate(model, prompt, 3, first_row=-1)


def test_sampled_tokens_follow_the_sampled_law() -> None:
    """Chi-square goodness of fit of one decoding step (fixed seed), zero-probability
    tokens never drawn, and top-k restricted to the k most likely tokens."""
    from scipy import stats

    probs = np.array([0.3, 0.0, 0.25, 0.2, 0.0, 0.15, 0.1])
    logits = torch.tensor(np.log(np.where(probs > 0, probs, 1e-300)))
    logits[probs == 0] = -math.inf

    def model(idx: torch.Tensor) -> torch.Tensor:
        return logits.expand(*idx.shape, -1)

    n = 20000
    tok = generate(model, np.zeros((n, 1), dtype=np.int64), 1, seed=11)[:, 1].numpy()
    counts = np.bincount(tok, minlength=7)
    assert counts[probs == 0].sum() == 0
    pos = probs > 0
    assert stats.chisquare(counts[pos], n * probs[pos]).pvalue > 1e-3
    # a wrong law is rejected by the same test (power)
    wrong = np.array([0.25, 0.25, 0.2, 0.15, 0.15])
    assert stats.chisquare(counts[pos], n * wrong).pvalue < 1e-6
    top2 = generate(model, np.zeros((2000, 1), dtype=np.int64), 1, seed=12, top_k=2)[:, 1].numpy()
    assert set(np.unique(top2)) == {0, 2}
    frac0 = (top2 == 0).mean()  # 0.3 / 0.55
    assert abs(frac0 - 0.3 / 0.55) < 4 * math.sqrt(0.25 / 2000)


def test_true_model_generations_are_typical_and_self_typical() -> None:
    chain = dp.MarkovChain.random(16, entropy_rate=1.5, seed=3)
    reps = generation_typicality(
        TrueMarkovModel(chain), chain, num_sequences=400, length=64, temperatures=(1.0,), seed=1
    )
    r = reps[0]
    assert abs(r.mean_nll - 1.5) < 4 * r.true_nll.std() / math.sqrt(400) + 0.01
    assert r.fraction_typical > 0.9  # the band holds ~95% of true sequences
    assert r.kl_to_truth.max() < 1e-9  # sampling from the truth: KL(q || P) = 0
    np.testing.assert_allclose(r.self_nll, r.true_nll, atol=1e-9)
    st = self_typicality(TrueMarkovModel(chain), chain.sample(400, 1, seed=2), 64, seed=0)
    s = st.summary()
    assert abs(s["gap"]) < 4 * s["gap_stderr"]


def test_generation_report_holds_the_processes_typicality_report() -> None:
    iid = dp.IID([0.5, 0.25, 0.125, 0.125])
    model = TrueMarkovModel(dp.MarkovChain(np.tile(iid.probs, (4, 1))))
    (r,) = generation_typicality(model, iid, num_sequences=64, length=32, temperatures=(1.0,), eps=0.1, seed=4)
    assert isinstance(r.typicality, dp.TypicalityReport)
    # i.i.d.: the conditional law of every generated token is the process's own, so the
    # report equals what the process computes for the generated part alone
    own = iid.typicality(r.tokens[:, 1:], eps=0.1)
    np.testing.assert_allclose(r.typicality.nll_per_token, own.nll_per_token, rtol=1e-12)
    np.testing.assert_allclose(r.typicality.z, own.z, rtol=1e-9, atol=1e-12)
    assert (r.entropy_rate, r.eps, r.typicality.unit) == (own.entropy_rate, own.eps, own.unit)
    assert r.fraction_below == own.below.mean() and r.fraction_above == own.above.mean()
    assert r.true_nll is r.typicality.nll_per_token and r.z is r.typicality.z


def test_zero_varentropy_path_on_centre_has_z_zero() -> None:
    # every conditional law is uniform, so every path has zero varentropy and sits on the
    # centre: z is 0 (as in TypicalityReport), not +inf
    uniform = dp.IID(np.full(4, 0.25))
    (r,) = generation_typicality(UniformModel(4), uniform, num_sequences=16, length=20, temperatures=(1.0,), eps=0.1)
    assert np.array_equal(r.z, np.zeros(16))
    assert np.array_equal(uniform.typicality(r.tokens[:, 1:]).z, r.z)
    assert r.summary()["mean_z"] == 0.0 and r.fraction_typical == 1.0


def test_argument_checks_name_the_argument() -> None:
    chain = dp.MarkovChain.random(5, seed=0)
    model = TrueMarkovModel(chain)
    x = chain.sample(4, 6, seed=0)
    with pytest.raises(TypeError, match="process must be a dataprobes Process, got str"):
        excess_loss(model, "chain", x)
    with pytest.raises(TypeError, match="process must be a dataprobes Process"):
        generation_typicality(model, object())
    with pytest.raises(TypeError, match="process must be a dataprobes Process"):
        ProbeDataset(chain.transition, seq_len=4, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        excess_loss(model, chain, x, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        generation_typicality(model, chain, batch_size=2.5)
    with pytest.raises(TypeError, match="score_first must be a bool"):
        excess_loss(model, chain, x, score_first="yes")
    with pytest.raises(TypeError, match="temperatures must be a sequence of numbers, got float"):
        generation_typicality(model, chain, temperatures=1.0)
    with pytest.raises(ValueError, match="temperatures must not be empty"):
        generation_typicality(model, chain, temperatures=())
    with pytest.raises(ValueError, match=r"temperatures\[1\] must be finite"):
        generation_typicality(model, chain, temperatures=(1.0, math.nan))
    with pytest.raises(TypeError, match="temperature must be a real number"):
        generate(model, x[:, :1], 3, temperature="hot")
    with pytest.raises(ValueError, match=r"top_p must lie in \(0, 1\], got 1.5"):
        generate(model, x[:, :1], 3, top_p=1.5)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1.0"):
        TinyGPT(vocab_size=5, dropout=1.0)


def test_training_approaches_floor_and_temperature_regimes() -> None:
    torch.manual_seed(0)
    chain = dp.MarkovChain.random(24, entropy_rate=1.5, seed=0)
    m = TinyGPT(vocab_size=24, max_len=80, d_model=32, n_layers=1, n_heads=2)
    res = train(m, chain, steps=150, batch_size=32, seq_len=32, lr=1e-2, eval_every=50, progress=False)
    assert res.eval_kl[-1] < 0.5 * res.eval_kl[0]
    assert res.eval_nll[-1] < res.eval_nll[0] - 1.0
    reps = generation_typicality(m, chain, num_sequences=64, length=64, temperatures=(0.0, 1.0, 2.0), seed=0)
    greedy, t1, hot = reps
    assert greedy.regime == "over-conservative" and greedy.fraction_below > 0.9
    assert hot.regime == "over-divergent" and hot.fraction_above > 0.9
    assert greedy.mean_nll < t1.mean_nll < hot.mean_nll
    # decomposition: E_q[-log P] = H(q) + KL(q || P) holds for the sampled tokens on average
    assert t1.model_entropy.mean() + t1.kl_to_truth.mean() == pytest.approx(t1.mean_nll, abs=0.1)


def test_transformers_gpt2_from_config() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=12, n_positions=40, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    chain = dp.MarkovChain.random(12, seed=0)
    x = chain.sample(4, 20, seed=0)
    ex = excess_loss(model, chain, x)
    assert ex.kl > 0 and np.isfinite(ex.kl)
    reps = generation_typicality(model, chain, num_sequences=4, length=8, temperatures=(0.0, 1.0))
    assert reps[0].tokens.shape == (4, 9)


# ---------------------------------------------------------------- demo


def test_demo_runs_with_a_reduced_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dataprobes.cli import main

    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--quick",
                "--vocab-size",
                "16",
                "--out-dir",
                str(out),
                "--json",
                str(out / "r.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "learning curve" in text and "greedy" in text and "T=1.5" in text
    results = json.loads((out / "r.json").read_text())
    assert [g["decoding"] for g in results["generations"]] == ["greedy", "T=1", "T=1.3", "T=1.5"]
    assert results["entropy_rate"] == pytest.approx(2.0)
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert (out / "generation_nll.png").stat().st_size > 1000
    # the legend explains the columns; results.json lies next to the plots
    assert "legend:" in text and "H(q)" in text and "KL(q||P)" in text and "over-conservative" in text
    assert "floor" in text and "entropy rate" in text
    assert json.loads((out / "results.json").read_text()) == results
    # a second run does not overwrite those results without --force
    again = ["demo", "--quick", "--vocab-size", "16", "--out-dir", str(out), "--no-progress"]
    assert main(again) == 2
    assert "--force" in capsys.readouterr().err


def test_plot_colours_of_settings_and_band_differ() -> None:
    from matplotlib.colors import to_rgb

    from dataprobes.lm.plots import BAND_COLOR, setting_color

    band = np.array(to_rgb(BAND_COLOR))
    colours = [np.array(to_rgb(setting_color(i))) for i in range(9)]
    for c in colours:  # every setting (T = 1.3 is the third) is far from the band's colour
        assert np.abs(c - band).max() > 0.2
    assert len({tuple(c) for c in colours}) == 9


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_probe_dataset_gives_the_same_batches_under_every_start_method(context: str) -> None:
    import multiprocessing

    if context not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{context} is not available on this platform")
    process = dp.Mixture([dp.MarkovChain.random(7, seed=0), dp.HMM.random(3, 7, seed=1)], [0.4, 0.6])
    ds = ProbeDataset(process, seq_len=12, batch_size=4, seed=3, num_batches=6)
    want = sorted(tuple(b.flatten().tolist()) for b in ds)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context)
    got = sorted(tuple(b.flatten().tolist()) for b in loader)
    assert got == want


def test_training_on_fixed_data_learns_the_data_law_and_checkpoints_each_epoch(tmp_path: Path) -> None:
    """Fixed rows: the model learns the law that generated them (judged against it
    exactly), epochs are deterministic for a seed, and each epoch leaves a
    checkpoint with the Adam moments that LESS reads."""
    chain = dp.MarkovChain.random(12, entropy_rate=1.2, seed=3)
    rows = chain.sample(96, 24, seed=5)

    def run(seed: int, ckpt: Path | None = None) -> tuple[TinyGPT, object]:
        torch.manual_seed(0)
        m = TinyGPT(vocab_size=12, max_len=32, d_model=32, n_layers=1, n_heads=2)
        res = train(
            m,
            chain,
            data=rows,
            epochs=3,
            batch_size=32,
            lr=1e-2,
            warmup=2,
            seed=seed,
            eval_every=3,
            progress=False,
            betas=(0.9, 0.999),
            checkpoint_dir=ckpt,
        )
        return m, res

    m1, r1 = run(0, tmp_path / "a")
    m2, r2 = run(0)
    m3, _ = run(1)
    assert r1.steps == list(range(9)) and r1.tokens_seen == 3 * 96 * 24
    assert r1.eval_kl[-1] < 0.7 * r1.eval_kl[0]
    assert r1.train_loss == r2.train_loss  # same seed, same order, same bytes
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters(), strict=True))
    assert [p.name for p in r1.checkpoints] == ["epoch-0.pt", "epoch-1.pt", "epoch-2.pt"]
    assert len(r1.epoch_lrs) == 3 and all(lr > 0 for lr in r1.epoch_lrs)
    last = torch.load(r1.checkpoints[-1], weights_only=False)
    assert last["epoch"] == 2 and last["step"] == 9 and last["lr"] == pytest.approx(r1.epoch_lrs[-1])
    fresh = TinyGPT(vocab_size=12, max_len=32, d_model=32, n_layers=1, n_heads=2)
    fresh.load_state_dict(last["model"])
    for a, b in zip(fresh.parameters(), m1.parameters(), strict=True):
        assert torch.equal(a, b)
    state = last["optimizer"]["state"]
    assert state and all({"exp_avg", "exp_avg_sq"} <= set(s) for s in state.values())
    assert last["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_training_on_fixed_data_rejects_bad_arguments() -> None:
    chain = dp.MarkovChain.random(6, entropy_rate=1.0, seed=0)
    m = TinyGPT(vocab_size=6, max_len=16, d_model=16, n_layers=1, n_heads=2)
    rows = chain.sample(8, 8, seed=0)
    with pytest.raises(TypeError, match="data must be a 2-D integer array"):
        train(m, chain, data=rows.tolist(), progress=False)
    with pytest.raises(ValueError, match="data must be a 2-D integer array"):
        train(m, chain, data=rows[0], progress=False)
    with pytest.raises(ValueError, match="outside"):
        train(m, chain, data=rows + 6, progress=False)
    with pytest.raises(ValueError, match="drop steps="):
        train(m, chain, data=rows, steps=3, progress=False)
    with pytest.raises(ValueError, match="epochs applies to fixed data"):
        train(m, chain, epochs=2, progress=False)
    with pytest.raises(ValueError, match="betas"):
        train(m, chain, data=rows, betas=(0.9, 1.0), progress=False)
    with pytest.raises(TypeError, match="betas"):
        train(m, chain, data=rows, betas=("a", 0.9), progress=False)
    with pytest.raises(ValueError, match="warmup"):
        train(m, chain, data=rows, warmup=-1, progress=False)


def _padded_run(rows: np.ndarray, lengths: object, **kw: object) -> tuple[TinyGPT, object]:
    chain = dp.MarkovChain.random(11, entropy_rate=1.0, seed=3)
    torch.manual_seed(0)
    m = TinyGPT(vocab_size=11, max_len=16, d_model=8, n_layers=1, n_heads=2)
    kw = {"epochs": 2, "batch_size": 5, "warmup": 1, "seed": 1, "progress": False, "eval_sequences": 4, **kw}
    return m, train(m, chain, data=rows, lengths=lengths, **kw)


def test_fixed_data_lengths_mask_the_padding() -> None:
    """Right-padded rows with ``lengths``: the padding's content never changes
    the trained weights or the Adam moments (two paddings, one of them not
    even token ids, give identical bytes), the first loss is the mean NLL
    over valid targets computed row by row, ``tokens_seen`` counts valid
    tokens; without ``lengths`` the padding would be trained on."""
    chain = dp.MarkovChain.random(11, entropy_rate=1.0, seed=3)
    rows = chain.sample(24, 13, seed=4).astype(np.int64)
    lengths = np.random.default_rng(0).integers(2, 14, 24)
    a, b = rows.copy(), rows.copy()
    for i, n in enumerate(lengths):
        a[i, n:] = (i * 7) % 11
        b[i, n:] = -1 - i  # not a token id: never read
    ma, ra = _padded_run(a, lengths)
    mb, rb = _padded_run(b, torch.from_numpy(lengths))
    for x, y in zip(ma.parameters(), mb.parameters(), strict=True):
        assert torch.equal(x, y)
    assert ra.train_loss == rb.train_loss
    assert ra.tokens_seen == rb.tokens_seen == 2 * int(lengths.sum())
    mc, _ = _padded_run(a, None)  # padding trained on as real tokens
    assert any(not torch.equal(x, y) for x, y in zip(ma.parameters(), mc.parameters(), strict=True))
    # first step, one batch of all rows: Σ valid NLL / #valid targets, row by row
    torch.manual_seed(0)
    ref = TinyGPT(vocab_size=11, max_len=16, d_model=8, n_layers=1, n_heads=2)
    total, count = 0.0, 0
    with torch.no_grad():
        for row, n in zip(rows, lengths, strict=True):
            x = torch.from_numpy(row[:n])[None]
            logp = torch.log_softmax(ref(x[:, :-1]).double(), -1)[0]
            total -= float(logp[torch.arange(n - 1), x[0, 1:]].sum())
            count += int(n) - 1
    _, rd = _padded_run(a, lengths, batch_size=24, epochs=1)
    assert rd.train_loss[0] == pytest.approx(total / count, rel=1e-5)


def test_fixed_data_full_lengths_equal_no_lengths() -> None:
    """Equal-length rows: ``lengths=None`` is the plain mean over all targets,
    the same training as ``lengths`` = the full length, and rows padded to a
    common length ``L`` train like the unpadded ``[N, L]`` rows."""
    chain = dp.MarkovChain.random(11, entropy_rate=1.0, seed=3)
    rows = chain.sample(24, 13, seed=4).astype(np.int64)
    m1, r1 = _padded_run(rows, None)
    m2, r2 = _padded_run(rows, np.full(24, 13))
    assert r1.tokens_seen == r2.tokens_seen == 2 * 24 * 13
    padded = rows.copy()
    padded[:, 9:] = 3
    m3, r3 = _padded_run(rows[:, :9], None)
    m4, r4 = _padded_run(padded, [9] * 24)
    assert r3.tokens_seen == r4.tokens_seen == 2 * 24 * 9
    for (x1, x2), (x3, x4) in zip(
        zip(m1.parameters(), m2.parameters(), strict=True),
        zip(m3.parameters(), m4.parameters(), strict=True),
        strict=True,
    ):
        torch.testing.assert_close(x1, x2, atol=1e-4, rtol=0)
        torch.testing.assert_close(x3, x4, atol=1e-4, rtol=0)
    np.testing.assert_allclose(r1.train_loss, r2.train_loss, rtol=1e-5)
    np.testing.assert_allclose(r3.train_loss, r4.train_loss, rtol=1e-5)


def test_fixed_data_lengths_rejects_bad_values() -> None:
    chain = dp.MarkovChain.random(6, entropy_rate=1.0, seed=0)
    m = TinyGPT(vocab_size=6, max_len=16, d_model=16, n_layers=1, n_heads=2)
    rows = chain.sample(4, 8, seed=0)
    cases = [
        ([2, 3, 4], ValueError, "one length per row"),
        ([1, 3, 4, 8], ValueError, r"\[2, 8\]"),
        ([2, 3, 4, 9], ValueError, r"\[2, 8\]"),
        ([2.0, 3.0, 4.0, 8.0], TypeError, "lengths must hold integers"),
        ("2348", TypeError, "lengths must be"),
        (7, TypeError, "lengths must be"),
    ]
    for lengths, exc, match in cases:
        with pytest.raises(exc, match=match):
            train(m, chain, data=rows, lengths=lengths, progress=False)
    bad = rows.copy()
    bad[0, 1] = 6  # a real token outside the vocabulary is still refused
    with pytest.raises(ValueError, match="outside"):
        train(m, chain, data=bad, lengths=[8, 8, 8, 8], progress=False)
    bad = rows.copy()
    bad[0, 2:] = 6  # ... but the same id as padding is never read
    train(m, chain, data=bad, lengths=[2, 8, 8, 8], progress=False, eval_sequences=2)
    with pytest.raises(ValueError, match="pass data= too"):
        train(m, chain, steps=2, lengths=[8], progress=False)


def test_fixed_data_order_accepts_every_seed() -> None:
    """Epoch orders come from SeedSequence([seed, epoch]): any seed check_seed accepts works."""
    from dataprobes.lm.train import _epoch_batches

    rows = torch.arange(20).reshape(10, 2)
    for seed in (0, 2**45, 2**64 - 1):
        batches = list(_epoch_batches(rows, 4, 2, seed))
        assert len(batches) == 6
        seen = torch.cat([b for e, b in batches if e == 0])[:, 0].sort().values
        assert torch.equal(seen, rows[:, 0])
