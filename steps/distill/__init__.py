"""Distillation: students of the champion, their ONNX graphs, and the selection of the one that serves.

A student is a scikit-learn ``Pipeline(preprocess, DistilledClassifier(regressor))`` (:mod:`.students`): raw input
columns in, ``predict_proba`` = sigmoid(regressor output) out, so every consumer of a TrainFlow model (gates,
ScoreFlow, ``models.predict_proba``) uses it unchanged. Its ONNX graph (:mod:`.onnx`) is the regressor converted by
skl2onnx with the shared preprocessing conventions of :mod:`steps.modeling.onnx`, followed by ``Sigmoid`` and a
``[1 - p, p]`` concat into ``probabilities``. ``onnxruntime.quantization.quantize_dynamic`` rewrites MatMul/Gemm
weights to int8 (the MLP and the linear student); a tree ensemble has no such weights, which is measured and recorded,
never assumed. :mod:`.selection` times every model on every runtime, picks the student and gates it.
"""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
