"""Freshness on a real Dagster instance: a fresh stack shows its freshness checks pending (not
failed) until each cache's first materialization, then evaluated, with a real duration."""

import re
from datetime import timedelta

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nova_jobs.definitions import defs
from nova_jobs.lib.cache_checks import FRESHNESS_CHECK_NAME
from nova_jobs.observability.checks import CACHE_CHECKS, freshness_checks
from nova_jobs.observability.freshness import duration_in_words, freshness_result

pytestmark = pytest.mark.integration

TRENDING_1H = next(spec.asset_key for spec in CACHE_CHECKS if spec.job_name == "trending_1h")


def tick(instance: dg.DagsterInstance):
    sensor = defs.get_sensor_def("cache_freshness_sensor")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        return sensor(context)


def materialize_now(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset_key))


def evaluate(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> dg.AssetCheckEvaluation:
    [check] = [c for c in freshness_checks if dg.AssetCheckKey(asset_key, FRESHNESS_CHECK_NAME) in c.check_keys]
    result = dg.materialize([check], instance=instance, selection=dg.AssetSelection.checks(check))
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_a_fresh_stack_requests_no_freshness_check_before_the_first_runs():
    with dg.instance_for_test() as instance:
        decision = tick(instance)
        assert isinstance(decision, dg.SkipReason), decision
        assert instance.get_runs() == []


def test_the_first_materialization_makes_its_check_due_and_only_its_own():
    with dg.instance_for_test() as instance:
        materialize_now(instance, TRENDING_1H)
        decision = tick(instance)
        assert isinstance(decision, dg.RunRequest), decision
        assert list(decision.asset_check_keys) == [dg.AssetCheckKey(TRENDING_1H, FRESHNESS_CHECK_NAME)]


def test_a_check_right_after_an_update_passes_and_names_a_real_duration():
    with dg.instance_for_test() as instance:
        materialize_now(instance, TRENDING_1H)
        evaluation = evaluate(instance, TRENDING_1H)
        assert evaluation.passed
        # Dagster's own check wrote "The last update was  ago" for an update under a second old.
        assert "  " not in evaluation.description
        assert re.search(r"updated \d+(\.\d)? seconds? ago", evaluation.description), evaluation.description
        assert evaluation.metadata["dagster/fresh_until_timestamp"].value > evaluation.metadata[
            "dagster/last_updated_timestamp"].value


def test_a_stale_cache_fails_with_its_age_and_allowance():
    result = freshness_result(TRENDING_1H, updated=1_000.0, now=1_000.0 + 305, stale_after=timedelta(seconds=120))
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert "5 minutes, 5 seconds ago" in result.description and "allowed 2 minutes" in result.description
    assert result.metadata["overdue_seconds"].value == pytest.approx(185)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-5, max_value=10 * 365 * 86400, allow_nan=False))
def test_every_duration_has_words(seconds):
    words = duration_in_words(seconds)
    assert re.fullmatch(r"\d+(\.\d)? \w+(, \d+ \w+)?", words), words
