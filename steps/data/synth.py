"""Seeded, deterministic generator of card-payment transactions for fraud detection.

The label follows a known non-linear rule plus noise, with group-dependent base rates (age band, region) so the
fairness gates have something real to find. Rows are generated chunk by chunk (each chunk seeded by
``(seed, chunk index)``) and written as Parquet row groups, so memory stays flat at any row count and the bytes
depend only on the arguments. Drift knobs shift the covariates or the fraud rule from a given month on.

CLI: ``python -m steps.data.synth --rows 200000 --out data/transactions.parquet``.

"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps.core.progress import Progress

logger = logging.getLogger(__name__)


MERCHANT_CATEGORIES = (
    "grocery", "restaurants", "fuel", "pharmacy", "clothing", "electronics", "travel", "airlines", "hotels",
    "entertainment", "streaming", "gaming", "gift_cards", "jewelry", "crypto_exchange", "utilities", "telecom",
    "insurance", "education", "healthcare", "home_improvement", "automotive", "charity", "marketplace",
)


HIGH_RISK_MERCHANTS = ("electronics", "gift_cards", "jewelry", "crypto_exchange", "gaming", "marketplace")


CHANNELS = ("pos_chip", "contactless", "ecommerce", "atm", "moto")


DEVICES = ("terminal", "mobile_app", "mobile_web", "desktop", "tablet")


COUNTRIES = {  # country -> region
    "US": "north_america", "CA": "north_america", "MX": "latam", "BR": "latam", "AR": "latam", "CO": "latam",
    "GB": "europe", "DE": "europe", "FR": "europe", "ES": "europe", "IT": "europe", "PL": "europe",
    "IN": "apac", "JP": "apac", "AU": "apac", "SG": "apac", "ZA": "mea", "NG": "mea", "AE": "mea", "EG": "mea",
}


REGIONS = ("north_america", "latam", "europe", "apac", "mea")


AGE_BANDS = ("18-25", "26-35", "36-50", "51-65", "65+")


# Group-dependent base rates (log-odds offsets): the "unfairness" the data carries on its own.
AGE_OFFSET = {"18-25": 0.45, "26-35": 0.1, "36-50": 0.0, "51-65": 0.05, "65+": 0.35}


REGION_OFFSET = {"north_america": 0.0, "latam": 0.35, "europe": -0.1, "apac": 0.1, "mea": 0.4}


INTERCEPT = -6.5


@dataclass(frozen=True)
class SynthSpec:
    """Every knob of the generator; the output bytes are a function of these values alone."""

    rows: int = 200_000
    seed: int = 7
    start: str = "2025-01-01"
    months: int = 12
    covariate_drift_month: int | None = None  # 0-based month index from which covariates shift
    covariate_drift_strength: float = 1.0
    concept_drift_month: int | None = None  # 0-based month index from which the fraud rule changes
    concept_drift_strength: float = 1.0  # 1 = the drifted rule; above 1 extrapolates it (a stronger shift)
    row_group_rows: int = 100_000

    def __post_init__(self) -> None:
        if self.rows < 0 or self.months < 1 or self.row_group_rows < 1:
            raise ValueError(f"rows must be >= 0, months >= 1 and row_group_rows >= 1, got {self}")


def _month_index(times: np.ndarray, start: np.datetime64) -> np.ndarray:
    """0-based calendar month of each timestamp relative to ``start``."""
    months = times.astype("datetime64[M]") - start.astype("datetime64[M]")
    return months.astype(np.int64)


def _choice(rng: np.random.Generator, levels: tuple[str, ...], p: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(levels), size=n, p=p / p.sum())


def _fraud_logit(c: dict[str, np.ndarray], concept: np.ndarray) -> np.ndarray:
    """The known, non-linear fraud rule (log-odds); ``concept`` in [0, 1] blends in the drifted rule."""
    merchant = c["merchant_category"]
    high_risk = np.isin(merchant, HIGH_RISK_MERCHANTS)
    night = c["hour"] <= 5
    ecommerce = c["channel"] == "ecommerce"
    not_present = c["card_present"] == 0
    ratio = c["amount_to_avg_ratio"]
    base = (
        INTERCEPT
        + 3.2 * np.tanh((ratio - 2.0) / 1.5).clip(0) * (1.0 + 0.5 * high_risk)
        + 1.3 * np.log1p(c["txn_count_1h"])
        + 2.2 * (night & ecommerce)
        + 1.8 * (c["is_foreign"] * not_present)
        + 1.2 * high_risk
        + 1.4 * (c["customer_tenure_days"] < 90)
        + 1.1 * c["failed_pin_attempts_24h"]
        + 1.2 * (np.nan_to_num(c["km_from_home"], nan=0.0) > 1500)
        + np.vectorize(AGE_OFFSET.get, otypes=[float])(c["customer_age_band"])
        + np.vectorize(REGION_OFFSET.get, otypes=[float])(c["region"])
    )
    # The drifted rule: night e-commerce fraud fades, contactless bursts and small "card testing" amounts appear.
    drifted = (
        base
        - 2.2 * (night & ecommerce)
        + 2.5 * ((c["channel"] == "contactless") & (c["txn_count_1h"] >= 3))
        + 2.0 * (c["amount"] < 5.0)
    )
    return base * (1.0 - concept) + drifted * concept


def generate_chunk(spec: SynthSpec, first_row: int, n: int) -> pd.DataFrame:
    """Rows ``[first_row, first_row + n)`` of the dataset described by ``spec`` (deterministic)."""
    rng = np.random.default_rng([spec.seed, first_row // spec.row_group_rows, first_row])
    start = np.datetime64(spec.start, "s")
    end = (np.datetime64(spec.start, "M") + spec.months).astype("datetime64[s]")
    span = (end - start).astype(np.int64)
    pos = (np.arange(first_row, first_row + n) + rng.uniform(0, 1, n)) / max(spec.rows, 1)
    times = start + (pos * span).astype("timedelta64[s]")
    month = _month_index(times, start)
    cov = np.zeros(n) if spec.covariate_drift_month is None else (
        (month >= spec.covariate_drift_month) * spec.covariate_drift_strength)
    concept = np.zeros(n) if spec.concept_drift_month is None else (
        (month >= spec.concept_drift_month) * spec.concept_drift_strength)

    channel_p = np.array([0.38, 0.25, 0.27, 0.06, 0.04])
    to_ecommerce = rng.uniform(size=n) < 0.25 * cov
    undrifted = _choice(rng, CHANNELS, channel_p, n)
    channel = np.where(to_ecommerce, 2, undrifted)
    chan = np.array(CHANNELS)[channel]
    card_present = np.isin(chan, ("pos_chip", "contactless", "atm")).astype(np.int8)
    # Draws whose use of randomness depends on a drifted value take it from the undrifted one, so rows before the
    # drift month come out exactly as without drift.
    undrifted_present = np.isin(np.array(CHANNELS)[undrifted], ("pos_chip", "contactless", "atm"))
    device_idx = np.where(card_present == 1, 0, rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.2, 0.28, 0.07]))
    device = np.array(DEVICES, dtype=object)[device_idx]
    device[rng.uniform(size=n) < 0.01] = None  # the device fingerprint is sometimes missing

    country_keys = np.array(list(COUNTRIES))
    country_p = np.array([30, 4, 4, 5, 2, 2, 9, 6, 5, 4, 3, 2, 6, 3, 3, 2, 2, 2, 2, 1], dtype=float)
    country = country_keys[_choice(rng, tuple(country_keys), country_p, n)]
    region = np.vectorize(COUNTRIES.get, otypes=[object])(country)
    is_foreign = (rng.uniform(size=n) < np.where(chan == "ecommerce", 0.12, 0.04)).astype(np.int8)

    age_band = np.array(AGE_BANDS)[_choice(rng, AGE_BANDS, np.array([0.16, 0.27, 0.3, 0.18, 0.09]), n)]
    tenure = rng.gamma(2.0, 500.0, n).astype(np.int64)
    merchant = np.array(MERCHANT_CATEGORIES)[rng.integers(0, len(MERCHANT_CATEGORIES), n)]
    hour_p = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.5, 3, 5, 6, 6.5, 7, 7.5, 7, 6.5, 6.5, 7, 7.5, 7.5, 7, 6, 4.5, 3,
                       2])
    hour = rng.choice(24, size=n, p=hour_p / hour_p.sum())
    avg_amount = np.exp(rng.normal(3.6, 0.7, n))
    amount = np.round(avg_amount * np.exp(rng.normal(0.0, 0.8, n)) * (1 + 0.35 * cov), 2).clip(0.5, 50_000)
    txn_1h = rng.poisson(0.4, n)
    if spec.covariate_drift_month is not None:
        # The extra bursts come from their own stream: a Poisson draw uses a variable amount of randomness, so taking
        # it from ``rng`` would reshuffle every later column, rows before the drift month included.
        drift_rng = np.random.default_rng([spec.seed, first_row // spec.row_group_rows, first_row, 1])
        txn_1h = txn_1h + drift_rng.poisson(0.6 * cov)
    txn_24h = txn_1h + rng.poisson(3.0, n)
    km = np.round(rng.exponential(np.where(is_foreign == 1, 3000.0, 40.0)).clip(0, 20_000), 1)
    km[rng.uniform(size=n) < 0.02] = np.nan  # geolocation is sometimes unavailable
    cols: dict[str, np.ndarray] = {
        "transaction_id": np.arange(first_row, first_row + n, dtype=np.int64) + 1,
        "event_time": times,
        "amount": amount,
        "merchant_category": merchant,
        "channel": chan,
        "device_type": device,
        "country": country,
        "region": region,
        "hour": hour.astype(np.int64),
        "day_of_week": ((times.astype("datetime64[D]").astype(np.int64) + 3) % 7).astype(np.int64),
        "customer_age_band": age_band,
        "customer_tenure_days": tenure,
        "txn_count_1h": txn_1h.astype(np.int64),
        "txn_count_24h": txn_24h.astype(np.int64),
        "amount_sum_24h": np.round(amount + avg_amount * rng.poisson(2.0, n), 2),
        "distinct_merchants_7d": (1 + rng.poisson(4.0, n)).astype(np.int64),
        "avg_amount_30d": np.round(avg_amount, 2),
        "amount_to_avg_ratio": np.round(amount / avg_amount, 4),
        "km_from_home": km,
        "is_foreign": is_foreign.astype(np.int64),
        "card_present": card_present.astype(np.int64),
        "failed_pin_attempts_24h": (rng.binomial(3, np.where(undrifted_present, 0.03, 0.0)) * card_present
                                    ).astype(np.int64),
    }
    prob = 1.0 / (1.0 + np.exp(-_fraud_logit(cols, concept)))
    cols["is_fraud"] = (rng.uniform(size=n) < prob).astype(np.int64)
    frame = pd.DataFrame(cols)
    frame["event_time"] = frame["event_time"].astype("datetime64[us]").dt.tz_localize("UTC")
    return frame


def iter_chunks(spec: SynthSpec) -> Iterator[pd.DataFrame]:
    """Yield the dataset as DataFrames of ``spec.row_group_rows`` rows each."""
    for first in range(0, spec.rows, spec.row_group_rows):
        yield generate_chunk(spec, first, min(spec.row_group_rows, spec.rows - first))


def generate(spec: SynthSpec) -> pd.DataFrame:
    """The whole dataset in memory (for tests and small samples)."""
    chunks = list(iter_chunks(spec))
    return pd.concat(chunks, ignore_index=True) if chunks else generate_chunk(spec, 0, 0)


def write_parquet(spec: SynthSpec, out: str | Path) -> Path:
    """Write the dataset to ``out`` row group by row group (flat memory); atomic via a temporary file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    schema = pa.Schema.from_pandas(generate_chunk(spec, 0, 1000), preserve_index=False)  # types from a sample
    try:
        progress = Progress(f"writing {out.name}", total=spec.rows, log=logger)
        with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=True) as writer:
            for chunk in iter_chunks(spec):
                writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
                progress.advance(len(chunk))
        tmp.replace(out)
        progress.done()
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %d rows to %s (%s)", spec.rows, out, asdict(spec))
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m steps.data.synth --help``."""
    p = argparse.ArgumentParser(prog="python -m steps.data.synth", description=__doc__.splitlines()[0])
    d = SynthSpec()
    p.add_argument("--out", default="data/transactions.parquet", help="Parquet file to write (default: %(default)s)")
    p.add_argument("--rows", type=int, default=d.rows, help="rows to generate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed; same seed, same bytes (default: %(default)s)")
    p.add_argument("--start", default=d.start, help="first day of the event times, YYYY-MM-DD (default: %(default)s)")
    p.add_argument("--months", type=int, default=d.months, help="months of event times from --start (default: "
                   "%(default)s)")
    p.add_argument("--covariate-drift-month", type=int, default=None, help="0-based month from which amounts, "
                   "channel mix and velocity shift (default: none, no covariate drift)")
    p.add_argument("--covariate-drift-strength", type=float, default=d.covariate_drift_strength,
                   help="size of the covariate shift, 1 = the designed shift (default: %(default)s)")
    p.add_argument("--concept-drift-month", type=int, default=None, help="0-based month from which the fraud rule "
                   "itself changes (default: none, no concept drift)")
    p.add_argument("--concept-drift-strength", type=float, default=d.concept_drift_strength,
                   help="1 = the drifted rule, above 1 extrapolates it (default: %(default)s)")
    p.add_argument("--row-group-rows", type=int, default=d.row_group_rows, help="rows per Parquet row group, "
                   "written one at a time in flat memory (default: %(default)s)")
    a = vars(p.parse_args(argv))
    out = a.pop("out")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_parquet(SynthSpec(**a), out)


if __name__ == "__main__":
    main()
