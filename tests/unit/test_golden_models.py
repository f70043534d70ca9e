"""Models pickled by older code (tests/unit/golden, made at commit 2c8f871, before steps/ was grouped by stage)
still load through the verified loader and score exactly as they did."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.modeling import models

GOLDEN = Path(__file__).parent / "golden"
RECORD = json.loads((GOLDEN / "golden.json").read_text())



@pytest.mark.parametrize("name", sorted(RECORD["models"]))
def test_golden_blob_loads_and_scores_as_recorded(name):
    blob = (GOLDEN / f"{name}.pkl").read_bytes()
    expected = RECORD["models"][name]
    model = models.deserialize(blob, expected["fingerprint"])
    rows = pd.read_parquet(GOLDEN / RECORD["rows"])
    proba = model.predict_proba(rows[list(model.feature_names_in_)])[:, 1]
    np.testing.assert_allclose(proba, expected["proba"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(RECORD["models"]))
def test_golden_blob_with_one_byte_changed_is_refused(name):
    blob = bytearray((GOLDEN / f"{name}.pkl").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    with pytest.raises(models.FingerprintMismatch):
        models.deserialize(bytes(blob), RECORD["models"][name]["fingerprint"])
