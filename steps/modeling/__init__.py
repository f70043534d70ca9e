"""Model pipelines: features, candidate models, training, metrics, the reference profile, ONNX export."""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
