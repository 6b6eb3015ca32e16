from .scoring import METHODS, TILE_ROWS, GaussNewtonPreconditioner, TopK, fit_preconditioner, score
from .store import CorruptShardError, GradientStore, StoreWriter, config_diff, dequantize_int8, quantize_int8

__all__ = [
    "METHODS",
    "TILE_ROWS",
    "CorruptShardError",
    "GaussNewtonPreconditioner",
    "GradientStore",
    "StoreWriter",
    "TopK",
    "config_diff",
    "dequantize_int8",
    "fit_preconditioner",
    "quantize_int8",
    "score",
]
