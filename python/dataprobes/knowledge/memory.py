"""Memory levels: how well a model knows each fact, by multi-template completion.

Ye et al., "60 Data Points are Sufficient to Fine-Tune LLMs for
Question-Answering" (arXiv 2409.15825) measure a model's knowledge of a fact
``(s, r, o)`` by completing it under several templates: the *memory level* is
the fraction of templates whose greedy completion of the prompt (the template
up to the object) yields ``o``; levels are then bucketed. Here
(docs/math.md, "Knowledge probes (fact worlds)"):

* :func:`memory_level` on a :class:`~dataprobes.FactWorld`'s tokens (a
  :class:`~dataprobes.lm.TinyGPT`, a ``transformers`` causal LM, or any
  callable returning logits): one greedy token per prompt;
* :func:`memory_level` on text triples with a Hugging Face tokenizer and
  string templates (``{subject}``, ``{relation}``, ``{object}`` slots):
  greedy decoding for as many tokens as the object takes, normalised strings
  compared;
* :func:`memory_buckets`: five equal-width buckets on ``[0, 1]`` by default;
* :func:`level_exposure_table`: Spearman's rho between exposure and level,
  and the bucket mix of each exposure quantile.

PyTorch is imported only when a model is evaluated.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from .._validation import as_array, as_indices, as_tokens, check_bool, check_int, real_array
from ..processes.facts import FactWorld

__all__ = [
    "DEFAULT_NUM_BUCKETS",
    "LevelExposure",
    "level_exposure_table",
    "memory_buckets",
    "memory_level",
    "normalize_answer",
]

#: Our default number of equal-width memory buckets on [0, 1] (the paper's
#: five levels; configurable through ``edges``).
DEFAULT_NUM_BUCKETS = 5

_PUNCT = ".,;:!?\"'()[]{}"


def normalize_answer(text: str) -> str:
    """The string compared with the object: NFKC, lower case, whitespace
    collapsed, surrounding punctuation and spaces stripped."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    t = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", " ", t).strip().strip(_PUNCT).strip()


@overload
def memory_level(
    model: Any,
    world_or_facts: Any,
    templates: Any = None,
    *,
    tokenizer: Any = None,
    facts: Any = None,
    batch_size: int = 64,
    context: Any = None,
    progress: bool = True,
    return_hits: Literal[False] = False,
) -> np.ndarray: ...
@overload
def memory_level(
    model: Any,
    world_or_facts: Any,
    templates: Any = None,
    *,
    tokenizer: Any = None,
    facts: Any = None,
    batch_size: int = 64,
    context: Any = None,
    progress: bool = True,
    return_hits: Literal[True],
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def memory_level(
    model: Any,
    world_or_facts: Any,
    templates: Any = None,
    *,
    tokenizer: Any = None,
    facts: Any = None,
    batch_size: int = 64,
    context: Any = None,
    progress: bool = True,
    return_hits: bool,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
def memory_level(
    model: Any,
    world_or_facts: Any,
    templates: Any = None,
    *,
    tokenizer: Any = None,
    facts: Any = None,
    batch_size: int = 64,
    context: Any = None,
    progress: bool = True,
    return_hits: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Memory level of each fact: the fraction of ``templates`` under which
    ``model``'s greedy completion of the prompt yields the object.

    Token worlds (``tokenizer=None``): ``world_or_facts`` is a
    :class:`~dataprobes.FactWorld`, ``templates`` template ids (default all),
    ``facts`` fact ids (default all); the prompt is
    ``context + world.prompt(f, t)`` and a hit is ``argmax logits ==
    object``. ``model``: a TinyGPT, a ``transformers`` causal LM or a callable
    ``[B, L] -> [B, L, V]`` logits.

    Text (``tokenizer`` a Hugging Face tokenizer, ``model`` a causal LM taking
    ``input_ids``, ``attention_mask``, ``position_ids``): ``world_or_facts`` a
    FactWorld (its :meth:`~dataprobes.FactWorld.text_facts`; templates default
    to its :meth:`~dataprobes.FactWorld.text_templates`) or a sequence of
    ``(subject, relation, object)`` strings; ``templates`` strings with a
    ``{subject}`` slot, optionally ``{relation}`` and ``{object}`` (the prompt
    is the text before ``{object}``; without it the object follows after a
    space). Prompts are left-padded in batches; the model decodes greedily as
    many tokens as the statement ``prompt + object`` has after the prompt's
    tokens (in context: a BPE's ``" Paris"`` is not ``"Paris"``; a special
    token the tokenizer appends, such as an EOS, is left out), and a hit is
    :func:`normalize_answer` equality with the object. Where the object
    merges with the prompt's last characters (no space before ``{object}``),
    the prompt is cut back to the statement's common token prefix and the
    decoded rest of the statement is compared. A prompt and object longer
    than the model's context (``config.n_positions`` /
    ``max_position_embeddings``) is a ``ValueError`` naming the template and
    the fact.

    Returns ``[n_facts]`` float64 levels (``k / n_templates``), and with
    ``return_hits`` also the ``[n_facts, n_templates]`` bool hits.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    progress = check_bool("progress", progress)
    return_hits = check_bool("return_hits", return_hits)
    if tokenizer is None:
        hits = _token_hits(model, world_or_facts, templates, facts, batch_size, context, progress)
    else:
        if context is not None:
            raise ValueError("context applies to token worlds; put text context into the templates")
        hits = _text_hits(model, tokenizer, world_or_facts, templates, facts, batch_size, progress)
    levels = hits.sum(axis=1) / hits.shape[1]
    return (levels, hits) if return_hits else levels


def _model_eval(model: Any) -> Any:
    """Puts a torch module into eval mode; returns the mode to restore."""
    train = getattr(model, "training", None)
    if train and hasattr(model, "eval"):
        model.eval()
    return train


def _token_hits(
    model: Any, world: Any, templates: Any, facts: Any, batch_size: int, context: Any, progress: bool
) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    from ..lm.sampling import as_logits_fn, check_model_vocab

    if not isinstance(world, FactWorld):
        raise TypeError(
            f"world_or_facts must be a FactWorld for token worlds (pass tokenizer= for text triples), "
            f"got {type(world).__name__}"
        )
    tids = _template_ids(templates, world.num_templates)
    fids = world._fact_ids(facts)
    if fids.size == 0:
        raise ValueError("facts must not be empty")
    ctx = np.zeros(0, dtype=np.int64)
    if context is not None:
        arr, single = as_tokens(context)
        if not single:
            raise ValueError(f"context must be one 1-D token sequence, got shape {np.shape(context)}")
        ctx = arr[0].astype(np.int64)
        if ctx.size and (ctx.min() < 0 or ctx.max() >= world.vocab_size):
            raise ValueError(f"context tokens must lie in [0, {world.vocab_size})")
    check_model_vocab(model, world.vocab_size)
    fn, device = as_logits_fn(model)
    objects = torch.as_tensor(world.fact_tokens[fids, 2].astype(np.int64))
    hits = np.zeros((len(fids), len(tids)), dtype=bool)
    total = len(tids) * -(-len(fids) // batch_size)
    mode = _model_eval(model)
    try:
        with torch.no_grad(), tqdm(total=total, desc="memory levels", disable=not progress) as bar:
            for j, t in enumerate(tids):
                prompts = world.prompts(int(t), fids).astype(np.int64)
                full = np.concatenate([np.broadcast_to(ctx, (len(fids), ctx.size)), prompts], axis=1)
                for i in range(0, len(fids), batch_size):
                    x = torch.as_tensor(full[i : i + batch_size], device=device)
                    pred = fn(x)[:, -1].argmax(-1).cpu()
                    hits[i : i + batch_size, j] = (pred == objects[i : i + batch_size]).numpy()
                    bar.update(1)
    finally:
        if mode:
            model.train()
    return hits


def _template_ids(templates: Any, count: int) -> np.ndarray:
    if templates is None:
        return np.arange(count)
    if isinstance(templates, (str, bytes)):
        raise TypeError("templates must be template ids for token worlds (text templates need tokenizer=)")
    arr = as_array("templates", templates)
    if arr.dtype == object or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"templates must be integer template ids for token worlds, got dtype {arr.dtype}")
    idx = as_indices(arr, "templates").astype(np.int64)
    if idx.size == 0:
        raise ValueError("templates must not be empty")
    if idx.max() >= count:
        raise ValueError(f"templates must be template ids < {count}, got {int(idx.max())}")
    return idx


def _text_triples(world_or_facts: Any) -> list[tuple[str, str, str]]:
    if isinstance(world_or_facts, FactWorld):
        return world_or_facts.text_facts()
    if isinstance(world_or_facts, (str, bytes)) or not isinstance(world_or_facts, Sequence):
        raise TypeError(
            f"world_or_facts must be a FactWorld or a sequence of (subject, relation, object) strings, "
            f"got {type(world_or_facts).__name__}"
        )
    out = []
    for i, tr in enumerate(world_or_facts):
        if isinstance(tr, (str, bytes)) or not isinstance(tr, Sequence) or len(tr) != 3:
            raise ValueError(f"world_or_facts[{i}] must be a (subject, relation, object) triple, got {tr!r}")
        if not all(isinstance(v, str) for v in tr):
            raise TypeError(f"world_or_facts[{i}] must hold three strings, got {tr!r}")
        if not normalize_answer(tr[2]):
            raise ValueError(f"world_or_facts[{i}]: the object must not be empty, got {tr[2]!r}")
        out.append((tr[0], tr[1], tr[2]))
    if not out:
        raise ValueError("world_or_facts must not be empty")
    return out


def _split_template(i: int, template: Any) -> tuple[str, str]:
    """``(prompt format, separator before the object)`` of a text template."""
    if not isinstance(template, str):
        raise TypeError(f"templates[{i}] must be a string, got {type(template).__name__}")
    if "{subject}" not in template:
        raise ValueError(f"templates[{i}] must contain a {{subject}} slot, got {template!r}")
    head, found, _ = template.partition("{object}")
    prompt = head.rstrip()
    sep = head[len(prompt) :] if found else " "
    if not prompt:
        raise ValueError(f"templates[{i}] must have text before {{object}}, got {template!r}")
    try:
        prompt.format(subject="s", relation="r")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"templates[{i}]: only {{subject}}, {{relation}} and {{object}} slots are allowed ({exc!r})"
        ) from None
    return prompt, sep


def _text_hits(
    model: Any,
    tokenizer: Any,
    world_or_facts: Any,
    templates: Any,
    facts: Any,
    batch_size: int,
    progress: bool,
) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    triples = _text_triples(world_or_facts)
    fact_ids = list(range(len(triples)))  # each row's index in world_or_facts (for messages)
    if facts is not None:
        fids = as_indices(facts, "facts").astype(np.int64)
        if fids.size == 0:
            raise ValueError("facts must not be empty")
        if fids.max() >= len(triples):
            raise ValueError(f"facts must be fact ids < {len(triples)}, got {int(fids.max())}")
        fact_ids = fids.tolist()
        triples = [triples[i] for i in fact_ids]
    if templates is None:
        if not isinstance(world_or_facts, FactWorld):
            raise ValueError("templates are required for text triples (strings with {subject}/{relation} slots)")
        templates = world_or_facts.text_templates()
    if isinstance(templates, str) or not isinstance(templates, Sequence):
        raise TypeError(f"templates must be a sequence of strings, got {type(templates).__name__}")
    parts = [_split_template(i, tpl) for i, tpl in enumerate(templates)]
    if not parts:
        raise ValueError("templates must not be empty")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    param = next(model.parameters(), None) if hasattr(model, "parameters") else None
    device = param.device if param is not None else torch.device("cpu")
    limit, limit_name = _context_size(model)

    def ids(text: str) -> list[int]:
        """The tokens of ``text`` with the special tokens the tokenizer puts
        *before* it (a BOS), never those it appends (an EOS would end the prompt)."""
        bare = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(text)["input_ids"])
        lead = next((k for k in range(len(full) - len(bare) + 1) if full[k : k + len(bare)] == bare), 0)
        return full[:lead] + bare

    # (fact row, template column, prompt ids, object token count, expected text). The object's
    # tokens are those of the whole statement after the prompt's: a BPE merges the space before
    # the object into its first token (" Paris" is not "Paris"); where the object even merges
    # with the prompt's last characters, the prompt is cut back to the common token prefix.
    jobs = []
    for i, (s, r, o) in enumerate(triples):
        for j, (fmt, sep) in enumerate(parts):
            prompt = fmt.format(subject=s, relation=r)
            p_ids, s_ids = ids(prompt), ids(prompt + sep + o)
            if not p_ids:
                raise ValueError(f"templates[{j}] renders an empty prompt for fact {fact_ids[i]}")
            common = next(
                (k for k, (a, b) in enumerate(zip(p_ids, s_ids, strict=False)) if a != b), min(len(p_ids), len(s_ids))
            )
            expected = o
            if common < len(p_ids):
                if common == 0:
                    raise ValueError(
                        f"templates[{j}] with fact {fact_ids[i]}: the prompt {prompt!r} shares no token with the "
                        f"statement {prompt + sep + o!r} (the object merges into it): put a space before {{object}}"
                    )
                expected = str(tokenizer.decode(s_ids[common:], skip_special_tokens=True))
                p_ids = s_ids[:common]
            n_obj = max(1, len(s_ids) - len(p_ids))
            if limit is not None and len(p_ids) + n_obj - 1 > limit:
                raise ValueError(
                    f"templates[{j}] with fact {fact_ids[i]} ({s!r}, {r!r}, {o!r}) of world_or_facts: the prompt "
                    f"({len(p_ids)} tokens) and the object ({n_obj} tokens) need {len(p_ids) + n_obj - 1} "
                    f"positions, more than the model's context (config.{limit_name} = {limit}): shorten "
                    f"templates[{j}] or the fact's text, or use a model with a longer context"
                )
            jobs.append((i, j, p_ids, n_obj, expected))
    hits = np.zeros((len(triples), len(parts)), dtype=bool)
    mode = _model_eval(model)
    try:
        with (
            torch.no_grad(),
            tqdm(total=-(-len(jobs) // batch_size), desc="memory levels", disable=not progress) as bar,
        ):
            for b in range(0, len(jobs), batch_size):
                batch = jobs[b : b + batch_size]
                width = max(len(job[2]) for job in batch)
                x = torch.full((len(batch), width), int(pad), dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for k, job in enumerate(batch):
                    x[k, width - len(job[2]) :] = torch.tensor(job[2])
                    mask[k, width - len(job[2]) :] = 1
                x, mask = x.to(device), mask.to(device)
                steps = max(job[3] for job in batch)
                new = []
                for _ in range(steps):
                    pos = (mask.cumsum(1) - 1).clamp(min=0)
                    if limit is not None:  # a row past its own object (a longer one sets the steps): unused
                        pos = pos.clamp(max=limit - 1)
                    out = model(input_ids=x, attention_mask=mask, position_ids=pos)
                    logits = out.logits if hasattr(out, "logits") else out
                    nxt = logits[:, -1].argmax(-1)
                    new.append(nxt)
                    x = torch.cat([x, nxt[:, None]], 1)
                    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                gen = torch.stack(new, 1).cpu().tolist()
                for k, (i, j, _, n_obj, o) in enumerate(batch):
                    text = tokenizer.decode(gen[k][:n_obj], skip_special_tokens=True)
                    hits[i, j] = normalize_answer(text) == normalize_answer(o)
                bar.update(1)
    finally:
        if mode:
            model.train()
    return hits


def _context_size(model: Any) -> tuple[int | None, str]:
    """The model's position limit and the config attribute giving it
    (``n_positions`` / ``max_position_embeddings``), if it has one."""
    config = getattr(model, "config", None)
    for attr in ("n_positions", "max_position_embeddings"):
        size = getattr(config, attr, None)
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size, attr
    return None, ""


def memory_buckets(levels: Any, edges: Any = None) -> np.ndarray:
    """Bucket of each memory level: ``b`` with ``edges[b] <= level <
    edges[b+1]`` (the last bucket closed on the right), as int64.

    ``edges=None``: our default, ``DEFAULT_NUM_BUCKETS`` (5) equal-width
    buckets ``k/5`` on ``[0, 1]`` (the paper's five levels; a level on an edge
    goes to the bucket above). Otherwise strictly increasing finite edges
    (at least two) covering every level.
    """
    lv = real_array("levels", levels)
    if lv.ndim != 1:
        raise ValueError(f"levels must be 1-D, got shape {lv.shape}")
    if lv.size == 0:
        raise ValueError("levels must not be empty")
    if not np.isfinite(lv).all():
        raise ValueError("levels must be finite (no NaN)")
    if edges is None:
        e = np.arange(DEFAULT_NUM_BUCKETS + 1) / DEFAULT_NUM_BUCKETS
    else:
        e = real_array("edges", edges)
        if e.ndim != 1 or e.size < 2:
            raise ValueError(f"edges must be a 1-D array of at least 2 values, got shape {e.shape}")
        if not np.isfinite(e).all() or (np.diff(e) <= 0).any():
            raise ValueError("edges must be finite and strictly increasing")
    if lv.min() < e[0] or lv.max() > e[-1]:
        raise ValueError(
            f"levels must lie in [{e[0]:g}, {e[-1]:g}] (the edges' range), got [{lv.min():g}, {lv.max():g}]"
        )
    return np.minimum(np.searchsorted(e, lv, side="right") - 1, e.size - 2).astype(np.int64)


@dataclass(frozen=True)
class LevelExposure:
    """How memory levels follow exposure.

    Attributes:
        spearman: Spearman's rho between exposure and level (NaN-free: 0 when
            either is constant, with ``constant=True``).
        table: ``[Q, B]`` fraction of the facts of each exposure quantile
            (rows: lowest exposure first) in each memory bucket.
        quantile_edges: the ``Q + 1`` exposure values bounding the quantiles.
        mean_level: ``[Q]`` mean level per exposure quantile.
        constant: exposure or levels constant (rho undefined, reported 0).
    """

    spearman: float
    table: np.ndarray
    quantile_edges: np.ndarray
    mean_level: np.ndarray
    constant: bool


def level_exposure_table(levels: Any, exposure: Any, *, edges: Any = None, num_quantiles: int = 5) -> LevelExposure:
    """Spearman's rho between ``exposure`` and ``levels`` and the memory
    bucket mix (:func:`memory_buckets` with ``edges``) of each of
    ``num_quantiles`` exposure quantiles (facts ranked by exposure, ties by
    id, cut into near-equal groups)."""
    from scipy.stats import rankdata  # type: ignore[import-untyped]

    buckets = memory_buckets(levels, edges)
    lv = real_array("levels", levels)
    ex = real_array("exposure", exposure)
    if ex.shape != lv.shape:
        raise ValueError(f"exposure must have one value per level ({lv.size}), got shape {ex.shape}")
    if not np.isfinite(ex).all():
        raise ValueError("exposure must be finite (no NaN)")
    q = check_int("num_quantiles", num_quantiles, 1, lv.size)
    nb = int(DEFAULT_NUM_BUCKETS if edges is None else np.asarray(edges).size - 1)
    ra, rb = rankdata(ex), rankdata(lv)
    constant = bool(np.ptp(ra) == 0 or np.ptp(rb) == 0)
    rho = 0.0 if constant else float(np.corrcoef(ra, rb)[0, 1])
    order = np.argsort(ex, kind="stable")
    groups = np.array_split(order, q)
    table = np.zeros((q, nb))
    mean = np.zeros(q)
    for g, members in enumerate(groups):
        table[g] = np.bincount(buckets[members], minlength=nb) / len(members)
        mean[g] = lv[members].mean()
    bounds = np.array([ex[groups[0][0]]] + [ex[g[-1]] for g in groups])
    return LevelExposure(spearman=rho, table=table, quantile_edges=bounds, mean_level=mean, constant=constant)
