"""The registry's audit log on S3 (a local S3 server): one object per event, read back in order."""

from __future__ import annotations

import boto3
import pytest
from support import assert_a_save_between_check_and_write_loses

from steps.registry import store as stores

pytestmark = pytest.mark.xdist_group("cloud")  # one local S3 server and one set of background deployments per session


def test_s3_audit_log_uses_one_object_per_event(s3_endpoint, bucket, monkeypatch):
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "s3")
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", f"s3://{bucket}/metaflow")
    monkeypatch.setenv("METAFLOW_S3_ENDPOINT_URL", s3_endpoint)
    store = stores.event_store("tabular_mlops", "test.cloud", "TrainFlow")
    assert store.location == f"s3://{bucket}/metaflow/_registry/tabular_mlops/test.cloud/TrainFlow/events"
    store.append("2-b.json", b'{"n": 2}')
    store.append("1-a.json", b'{"n": 1}')
    assert store.read_all() == [b'{"n": 1}', b'{"n": 2}']
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="metaflow/_registry/")["Contents"]]
    assert sorted(keys) == [f"metaflow/_registry/tabular_mlops/test.cloud/TrainFlow/events/{n}"
                            for n in ("1-a.json", "2-b.json")]


def test_put_new_is_a_conditional_create_on_the_local_s3_server(s3_endpoint, bucket):
    """Claims and audit events rely on If-None-Match: the local S3 server enforces it, so the tests prove it."""
    from steps.core import storage
    from steps.scoring.claims import claim_date, holder

    uri = f"s3://{bucket}/conditional/once.json"
    storage.put_new(uri, b"first", s3_endpoint)
    with pytest.raises(FileExistsError, match="already exists"):
        storage.put_new(uri, b"second", s3_endpoint)
    assert storage.read_bytes(uri, s3_endpoint) == b"first"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METAFLOW_S3_ENDPOINT_URL", s3_endpoint)
        root = f"s3://{bucket}/claims-test"
        seqs = [claim_date(root, "2026-01-01", f"ScoreFlow/{i}").seq for i in range(3)]
        assert seqs == [1, 2, 3] and holder(root, "2026-01-01")["run"] == "ScoreFlow/2"


def test_replace_if_is_a_compare_and_swap_on_the_local_s3_server(s3_endpoint, bucket):
    """The monitor's state relies on If-Match: a writer holding an older ETag never overwrites a newer object."""
    from steps.core import storage

    uri = f"s3://{bucket}/conditional/state.json"
    storage.replace_if(uri, b"first", None, s3_endpoint)  # created: nothing was there
    with pytest.raises(storage.WriteConflict):
        storage.replace_if(uri, b"again", None, s3_endpoint)
    body, first = storage.read_version(uri, s3_endpoint)
    assert body == b"first"
    storage.replace_if(uri, b"second", first, s3_endpoint)  # the version just read
    with pytest.raises(storage.WriteConflict, match="changed since version"):
        storage.replace_if(uri, b"stale", first, s3_endpoint)  # that version is gone
    assert storage.read_bytes(uri, s3_endpoint) == b"second"
    storage.delete(uri, s3_endpoint)
    with pytest.raises(storage.WriteConflict):
        storage.replace_if(uri, b"removed", first, s3_endpoint)
    assert storage.read_bytes(uri, s3_endpoint) is None


def test_the_monitor_state_on_s3_is_never_saved_over_a_newer_one(s3_endpoint, bucket, monkeypatch):
    from steps.monitoring import state as states

    root = f"s3://{bucket}/monitor-state"
    theirs = assert_a_save_between_check_and_write_loses(root, monkeypatch)
    mine = {**theirs, "last_run": {"run": "MonitorFlow/10"}}
    assert states.save_state(root, mine, theirs, "MonitorFlow/10") == f"{root}/state.json"
    assert states.load_state(root) == mine
