"""Suggestion quality on a temporal holdout: a real network (Bitcoin OTC) and the demo data."""

import csv
import gzip
import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from nova_jobs.suggestions import defs as suggestion_defs
from nova_jobs.suggestions.quality import holdout_recall
from nova_jobs.suggestions.queries import SuggestionCaps
from nova_jobs_dev.demo.generate import generate_demo
from nova_jobs_tests.conftest import insert_rows

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BITCOIN_OTC = "data/bitcoin-otc/soc-sign-bitcoinotc.csv.gz"


def shared_data(relative: str, root: Path = PROJECT_ROOT) -> Path:
    """A file of the shared folder beside the checkout (`../shared`). Missing data fails the
    test: a skip would let CI go green without the yardstick ever being checked."""
    path = root.parent / "shared" / relative
    if not path.is_file():
        where = "in CI" if os.environ.get("CI", "").lower() == "true" else "on this machine"
        pytest.fail(f"{path} is missing {where}: put the shared folder (with {relative}) beside the "
                    "checkout as ../shared", pytrace=False)
    return path


def load_bitcoin_otc(clickhouse) -> list[int]:
    """Positive ratings become follows, negative ones blocks; returns the follow times, sorted."""
    with gzip.open(shared_data(BITCOIN_OTC), "rt") as handle:
        rows = [(int(s), int(t), float(r), datetime.fromtimestamp(int(float(ts)), UTC)) for s, t, r, ts in csv.reader(handle)]
    follows = [(s, t, at) for s, t, r, at in rows if r > 0]
    insert_rows(clickhouse, "follows", ["follower_id", "followee_id", "created_at"], follows)
    insert_rows(clickhouse, "user_blocks", ["blocker_id", "blocked_id", "created_at"],
                [(s, t, at) for s, t, r, at in rows if r < 0])
    return sorted(int(at.timestamp()) for _, _, at in follows)


def test_shared_data_is_found_beside_the_checkout_and_its_absence_fails_loudly(tmp_path, monkeypatch):
    assert shared_data(BITCOIN_OTC) == PROJECT_ROOT.parent / "shared" / BITCOIN_OTC
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"missing in CI: .*\.\./shared"):
        shared_data(BITCOIN_OTC, checkout)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.fail.Exception, match="missing on this machine"):
        shared_data(BITCOIN_OTC, checkout)


def test_bitcoin_otc_holdout_reproduces_the_yardstick(clickhouse):
    times = load_bitcoin_otc(clickhouse)
    assert len(times) == 32_029
    cutoff = times[int(len(times) * 0.9)]  # the last 10% of follows by time are hidden
    with clickhouse.get_client() as client:
        suggested, popular = holdout_recall(client, clickhouse.database_name, cutoff, times[-1], SuggestionCaps())
    # Published yardstick: friends-of-friends with popular fill about 12.8%, popular only 10.6%.
    assert suggested.recall == pytest.approx(0.128, abs=0.005)
    assert popular.recall == pytest.approx(0.106, abs=0.005)
    assert suggested.hidden_follows == popular.hidden_follows > 2000


def test_holdout_check_reports_recall_as_metadata(clickhouse, redis_resource):
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    with clickhouse.get_client() as client:
        generate_demo(client, clickhouse.database_name, users=3000, seed=11, now=now)
    job = dg.Definitions.merge(
        suggestion_defs, dg.Definitions(resources={"clickhouse": clickhouse, "redis": redis_resource})
    ).resolve_job_def("suggested_users_quality")
    result = job.execute_in_process(
        run_config={"ops": {"cache__suggested_users_holdout_recall": {"config": {"as_of": now.isoformat()}}}}
    )
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    assert metadata["hidden_follows"] > 100
    assert metadata["recall_at_20"] == pytest.approx(metadata["hits"] / metadata["hidden_follows"], abs=1e-4)
    assert 0 < metadata["recall_at_20"] < 1 and 0 < metadata["popular_only_recall_at_20"] < 1
    # On the demo graph most follows go to celebrities, so the popular list is a strong
    # baseline; the check warns exactly when friends-of-friends do not beat it.
    assert evaluation.passed == (metadata["recall_at_20"] >= metadata["popular_only_recall_at_20"])
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
