"""The one evaluation protocol: a *pipeline* turns an HR image into its reconstruction, and it is scored
the way published SR tables are (Y of BT.601, crop = scale, 8-bit output; :mod:`mobile_sr.metrics`).

Train validation, ``mobile-sr eval``, export verification (tiled through the artifact's own runtime),
the quality columns of ``bench`` and search scoring all call :func:`evaluate`; nothing else computes
a quality figure.
"""

from .pipeline import Codec, Jpeg, Pipeline, bicubic, bicubic_pipeline, parse_codec, pipeline_for
from .protocol import EvalResult, ImageScore, evaluate, evaluate_dataset, published_scores

__all__ = ["Codec", "EvalResult", "ImageScore", "Jpeg", "Pipeline", "bicubic", "bicubic_pipeline", "evaluate",
           "evaluate_dataset", "parse_codec", "pipeline_for", "published_scores"]
