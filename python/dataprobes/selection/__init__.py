"""Data selection: pick the training subset that matters.

Three families, each exact to its reference semantics and validated on probes
whose right answer is known (docs/math.md, "Data selection"):

- **DEITA** (Liu et al., ICLR 2024), score first, then diversity:
  :func:`diversity_filter`, :func:`expected_score`, :func:`deita_select`
  (module :mod:`dataprobes.selection.deita`).
- **LESS** (Xia et al., ICML 2024), gradient similarity to a target task:
  :func:`less_scores`, :func:`select_top` (module
  :mod:`dataprobes.selection.less`).
- **DSIR** (Xie et al., NeurIPS 2023), importance resampling on hashed
  n-grams: :func:`hashed_ngram_features`, :func:`dsir_weights`,
  :func:`dsir_select` (module :mod:`dataprobes.selection.dsir`).

- **At corpus scale**: :func:`dsir_select_corpus` (JSON Lines, Parquet,
  ``datasets``; streamed, resumable; ``dataprobes select dsir``) and
  :func:`dsir_select_ray` (Ray Data), module :mod:`dataprobes.selection.corpus`.
- **Planted truth**: :func:`labelled_pool` builds a pool of Markov chains,
  noisy and near-duplicated rows with their labels and the exact target law
  (module :mod:`dataprobes.selection.probe_pool`).

DSIR needs only numpy and scipy; DEITA's filter runs on numpy or PyTorch;
the gradient and model parts need PyTorch. Names are resolved lazily so that
importing this package never imports PyTorch.
"""

from __future__ import annotations

from .._lazy import lazy_names

_WHERE = {
    "diversity_filter": "deita",
    "expected_score": "deita",
    "deita_select": "deita",
    "last_token_embeddings": "deita",
    "mean_pool_embeddings": "deita",
    "combined_score": "deita",
    "complexity_prompt": "deita",
    "quality_prompt": "deita",
    "digit_token_ids": "deita",
    "DeitaSelection": "deita",
    "less_scores": "less",
    "less_features": "less",
    "select_top": "less",
    "less_warmup": "less",
    "less_trainer_callback": "less",
    "warmup_subset": "less",
    "LessWarmup": "less",
    "hashed_ngram_features": "dsir",
    "dsir_weights": "dsir",
    "dsir_select": "dsir",
    "fit_ngram_model": "dsir",
    "ngram_bucket_counts": "dsir",
    "log_importance_weights": "dsir",
    "ngram_log_ratio": "dsir",
    "gumbel_top_k": "dsir",
    "gumbel_noise": "dsir",
    "hash_info": "dsir",
    "CorpusSelection": "corpus",
    "dsir_select_corpus": "corpus",
    "dsir_select_ray": "ray_data",
    "labelled_pool": "probe_pool",
    "LabelledPool": "probe_pool",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_names(__name__, globals(), _WHERE)
