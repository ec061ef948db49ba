"""Classify videos with I3D (`i3d_jax.predict.classify`) or with a temporal head over its window
features (`i3d_jax.predict.head`); `python -m i3d_jax.predict VIDEO... --weights W`
(`i3d_jax.predict.cli`)."""

from i3d_jax.predict.classify import Classifier, read_labels, top_k

__all__ = ["Classifier", "read_labels", "top_k"]
