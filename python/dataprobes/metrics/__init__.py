"""Dataset metrics: how diverse is a data set, how well does it match a task,
and which of its items are near-duplicates.

Three families, each validated on probes whose answer is known
(docs/math.md, "Dataset metrics"):

- **Task2Vec coefficients** (Miranda, Lee et al. 2023; Chawla et al. 2025):
  :func:`task2vec_embedding`, :func:`diversity_coefficient`,
  :func:`cross_diversity`, :func:`alignment_coefficient`
  (module :mod:`dataprobes.metrics.task2vec`, needs PyTorch).
- **Fast diversity measures** on text and token arrays: :func:`distinct_n`,
  :func:`compression_ratio`, :func:`self_bleu`, :func:`vendi_score`
  (module :mod:`dataprobes.metrics.diversity`).
- **Near-duplicate detection**: :func:`minhash`, :func:`near_duplicates`
  (module :mod:`dataprobes.metrics.dedup`).

Names are resolved lazily so that importing this package never imports
PyTorch.
"""

from __future__ import annotations

from .._lazy import lazy_names

_WHERE = {
    # Task2Vec (task2vec.py)
    "task2vec_embedding": "task2vec",
    "diversity_coefficient": "task2vec",
    "cross_diversity": "task2vec",
    "alignment_coefficient": "task2vec",
    "task2vec_distance": "task2vec",
    "pairwise_task2vec_distances": "task2vec",
    "Task2VecEmbedding": "task2vec",
    "DiversityResult": "task2vec",
    "AlignmentResult": "task2vec",
    # fast diversity measures (diversity.py)
    "distinct_n": "diversity",
    "compression_ratio": "diversity",
    "self_bleu": "diversity",
    "vendi_score": "diversity",
    "ngram_diversity": "diversity",
    "self_repetition": "diversity",
    "homogenization_rougel": "diversity",
    # near-duplicates (dedup.py)
    "minhash": "dedup",
    "near_duplicates": "dedup",
    "near_duplicates_corpus": "dedup",
    "NearDuplicates": "dedup",
    "jaccard": "dedup",
    "lsh_candidate_probability": "dedup",
    "minhash_info": "dedup",
    "optimal_bands": "dedup",
    "shingles": "dedup",
    "write_clusters": "dedup",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_names(__name__, globals(), _WHERE)
