"""A large training part fitted without holding it: the preprocessing fitted on a sample, the model on every row.

``Pipeline.fit`` on a frame holds the frame, the preprocessing's copies of it (a median imputer sorts a masked copy
of the number columns; the cleaned categoricals are a Python string per cell) and the design matrix at once: the
logistic regression's task peaked at 4.6x the Arrow size of its columns at 10M generated rows. Streamed, the task holds
a sample for the preprocessing's fit, then the design matrix, filled one batch of rows at a time (its sparse
arrays grown in place), beside one batch. The preprocessing's statistics (medians, means and scales) come from the
sample, as scikit-learn's own ``QuantileTransformer`` and ``KBinsDiscretizer`` fit on subsamples; a categorical
column's levels, when the dataset config leaves them open, still come from every row. The model is fitted on every
row's features as the fitted preprocessing transforms them, so a tree pipeline (numbers passed through, levels
encoded) is the model ``Pipeline.fit`` makes. Neither step holds a stacked copy it does not need: the preprocessing
is fitted without stacking its output (:func:`fit_unstacked`), and a batch is transformed ``TRANSFORM_ROWS`` rows at
a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.utils._set_output import _get_output_config
from threadpoolctl import threadpool_limits

from steps.config.dataset import DatasetConfig
from steps.data.table import row_slices
from steps.modeling.features import _to_str

logger = logging.getLogger(__name__)

FIRST_NNZ = 1 << 16  # entries a sparse design matrix has room for at least
GROW = 1.05  # room made beyond the entries expected, and how much more a short matrix gets
# Rows transformed at a time. scikit-learn's ColumnTransformer stacks a linear pipeline's dense number block and
# sparse one-hot block through COO copies of both: on 700k streamed training rows of the generated data (batches of
# 262,144 rows) the logistic regression's design phase peaked +646 MiB above the imports transformed whole, +434 MiB
# in slices of 65,536 rows (the same matrix; LightGBM's dense one +334 -> +318 MiB).
TRANSFORM_ROWS = 65_536
Batches = Callable[[list[str]], Iterator[pd.DataFrame]]  # the rows' given columns, in batches, in order


def fit_streamed(pipeline: Pipeline, sample: Callable[[], pd.DataFrame], batches: Batches, rows: int,
                 spec: DatasetConfig, threads: int) -> tuple[Pipeline, float]:
    """Fit ``pipeline``'s preprocessing on ``sample()`` (dropped once fitted), then its model on all ``rows`` rows of
    ``batches``; returns (pipeline, seconds spent fitting and transforming, not reading)."""
    if len(pipeline.steps) != 2:
        raise ValueError(f"a streamed fit takes a (preprocess, model) pipeline, not {[n for n, _ in pipeline.steps]}")
    preprocess, model = pipeline[0], pipeline[-1]
    with threadpool_limits(limits=threads):
        encoder, levels, spent = _encoder(preprocess), None, 0.0
        if encoder is not None and isinstance(encoder.categories, str):
            levels, spent = open_levels(spec, batches)
        fitted_on = _fit_preprocess(preprocess, encoder, levels, sample, spec)
        spent += fitted_on[1]
        x, y, seconds = design_matrix(preprocess, batches([*spec.features, spec.target.name]), rows, spec)
        start = time.perf_counter()
        model.fit(x, y)
        spent += seconds + time.perf_counter() - start
    logger.info("fitted %s on %d rows (preprocessing on %d) in %.1fs", type(model).__name__, rows, fitted_on[0], spent)
    return pipeline, spent


def _fit_preprocess(preprocess: Any, encoder: Any, levels: list[list[str]] | None,
                    sample: Callable[[], pd.DataFrame], spec: DatasetConfig) -> tuple[int, float]:
    """Fit ``preprocess`` on ``sample()`` with ``levels`` (every row's) as the encoder's categories, then give the
    encoder back its parameter, so the pipeline's parameters are the ones it was built with; returns (sample rows,
    seconds)."""
    frame = sample()[spec.features]
    start, categories = time.perf_counter(), encoder.categories if encoder is not None else None
    if levels is not None:
        encoder.set_params(categories=levels)
    try:
        fit_unstacked(preprocess, frame)
    finally:
        if levels is not None:
            encoder.set_params(categories=categories)
    return len(frame), time.perf_counter() - start


def fit_unstacked(preprocess: ColumnTransformer, frame: pd.DataFrame) -> None:
    """``preprocess.fit(frame)`` without the stacked output that ``ColumnTransformer.fit`` builds and drops."""
    # ColumnTransformer.fit is fit_transform, whose last step stacks every transformer's output (a linear pipeline's
    # through COO copies of every block); with the default output every fitted attribute is set before it (tested:
    # the same pickled bytes), so an instance attribute hides the method for this call. Pandas output sets one more
    # attribute while stacking: fitted as usual. Not for one object fitted or used on two threads at once.
    if _get_output_config("transform", preprocess)["dense"] != "default":
        preprocess.fit(frame)
        return
    preprocess._hstack = lambda xs, n_samples: None
    try:
        preprocess.fit(frame)
    finally:
        del preprocess._hstack


def open_levels(spec: DatasetConfig, batches: Batches) -> tuple[list[list[str]], float]:
    """Every row's levels of the categorical columns, as an encoder fitted on every row finds them (cleaned, sorted;
    ``__missing__`` only when a value is missing), and the seconds spent."""
    names, spent = list(spec.categorical), 0.0
    found: list[set[str]] = [set() for _ in names]
    for batch in batches(names):
        start = time.perf_counter()
        cleaned = _to_str(batch[names])
        for j, seen in enumerate(found):
            seen.update(pd.unique(cleaned[:, j]).tolist())
        spent += time.perf_counter() - start
    logger.info("levels from every row: %s", {n: len(lv) for n, lv in zip(names, found, strict=True)})
    return [sorted(seen) for seen in found], spent


def _encoder(preprocess: Any) -> Any:
    """The categorical columns' encoder of :func:`features.preprocessor`'s transformer, or None without one."""
    for name, transformer, _ in preprocess.transformers:
        if name == "cat":
            return transformer.named_steps["encode"]
    return None


def design_matrix(preprocess: Any, batches: Iterator[pd.DataFrame], rows: int, spec: DatasetConfig
                  ) -> tuple[Any, np.ndarray, float]:
    """Every batch's features transformed by the fitted ``preprocess`` into one matrix (CSR when the transform is
    sparse, else a dense array), its target, and the seconds spent transforming. A batch is transformed
    ``TRANSFORM_ROWS`` rows at a time (:func:`~steps.data.table.row_slices`)."""
    matrix: _Rows | None = None
    targets, spent = [], 0.0
    for batch in batches:
        start = time.perf_counter()
        for part in map(preprocess.transform, row_slices(batch[spec.features], TRANSFORM_ROWS)):
            if matrix is None:
                matrix = (_SparseRows if sparse.issparse(part) else _DenseRows)(rows, part.shape[1])
            matrix.add(part)
        targets.append(batch[spec.target.name].to_numpy())
        spent += time.perf_counter() - start
    if matrix is None:
        raise ValueError("no rows to fit on")
    return matrix.done(), np.concatenate(targets), spent


class _Rows:
    """A matrix filled by blocks of rows."""

    def add(self, block: Any) -> None:
        """Append ``block``'s rows."""
        raise NotImplementedError

    def done(self) -> Any:
        """The matrix."""
        raise NotImplementedError


class _DenseRows(_Rows):
    """A dense matrix of a known number of rows, preallocated."""

    def __init__(self, rows: int, columns: int) -> None:
        self.out, self.at = np.empty((rows, columns), dtype=np.float64), 0

    def add(self, block: Any) -> None:
        """Copy ``block``'s rows in."""
        self.out[self.at:self.at + len(block)] = block
        self.at += len(block)

    def done(self) -> np.ndarray:
        """The matrix (every row filled)."""
        if self.at != len(self.out):
            raise ValueError(f"{self.at} rows filled of {len(self.out)}")
        return self.out


class _SparseRows(_Rows):
    """A CSR matrix grown block by block: its arrays are resized in place (``realloc``; a large block is remapped,
    not copied), so growing never holds two copies of them."""

    def __init__(self, rows: int, columns: int) -> None:
        self.expected, self.columns, self.nnz, self.rows = rows, columns, 0, 0
        self.data = np.empty(0, dtype=np.float64)
        self.indices = np.empty(0, dtype=np.int32)  # column numbers
        self.indptr = [np.zeros(1, dtype=np.int64)]

    def add(self, block: Any) -> None:
        """Append ``block``'s rows (any scipy sparse matrix; converted to CSR). Room for the whole matrix is made at
        the first block, from its entries per row (one-hot and number columns: about the same in every row), plus
        ``GROW``; then, when short, by that much again (a doubling's spare room would be real memory)."""
        block = sparse.csr_matrix(block)
        end = self.nnz + block.nnz
        if end > len(self.data):
            per_row = end / max(self.rows + block.shape[0], 1)
            size = max(end, FIRST_NNZ, int(per_row * max(self.expected, self.rows) * GROW))
            if len(self.data):
                size = max(size, int(len(self.data) * GROW))
            self.data.resize(size, refcheck=False)
            self.indices.resize(size, refcheck=False)
        self.data[self.nnz:end], self.indices[self.nnz:end] = block.data, block.indices
        self.indptr.append(block.indptr[1:].astype(np.int64) + self.nnz)
        self.nnz, self.rows = end, self.rows + block.shape[0]

    def done(self) -> sparse.csr_matrix:
        """The CSR matrix: its arrays cut to size in place; int32 offsets, as scipy makes them, while they fit."""
        self.data.resize(self.nnz, refcheck=False)
        self.indices.resize(self.nnz, refcheck=False)
        indptr = np.concatenate(self.indptr)
        small = max(self.nnz, self.columns) < np.iinfo(np.int32).max
        indices = self.indices if small else self.indices.astype(np.int64)  # scipy wants one index type for both
        return sparse.csr_matrix((self.data, indices, indptr.astype(np.int32) if small else indptr),
                                 shape=(self.rows, self.columns), copy=False)

