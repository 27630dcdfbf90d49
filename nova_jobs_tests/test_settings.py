"""Settings resolve explicit value, then environment, then default, and name themselves in errors."""

import pytest

from nova_jobs.lib.settings import SettingError, setting_choice, setting_float, setting_int


def test_explicit_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("NOVA_TEST_N", raising=False)
    assert setting_int("NOVA_TEST_N", default=7) == 7
    monkeypatch.setenv("NOVA_TEST_N", " 12 ")
    assert setting_int("NOVA_TEST_N", default=7) == 12
    assert setting_int("NOVA_TEST_N", 3, default=7) == 3
    monkeypatch.setenv("NOVA_TEST_N", "")
    assert setting_int("NOVA_TEST_N", default=7) == 7


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "NOVA_TEST_N='abc' is not a whole number"), ("-1", "NOVA_TEST_N=-1 must be at least 0"),
     ("101", "NOVA_TEST_N=101 must be at most 100")],
)
def test_bad_numbers_name_the_setting(monkeypatch, value, message):
    monkeypatch.setenv("NOVA_TEST_N", value)
    with pytest.raises(SettingError) as caught:
        setting_int("NOVA_TEST_N", default=1, minimum=0, maximum=100)
    assert str(caught.value) == message
    # Raised on its own, not while handling the parse error: the setting is the root cause.
    assert caught.value.__context__ is None


def test_floats_choices_and_required(monkeypatch):
    monkeypatch.setenv("NOVA_TEST_F", "0.5")
    assert setting_float("NOVA_TEST_F", default=1.0, minimum=0.0) == 0.5
    monkeypatch.setenv("NOVA_TEST_F", "half")
    with pytest.raises(SettingError, match="NOVA_TEST_F='half' is not a number"):
        setting_float("NOVA_TEST_F", default=1.0)
    with pytest.raises(SettingError, match="TRENDING_SCORING='hot' is not one of decayed, seed"):
        setting_choice("TRENDING_SCORING", ["decayed", "seed"], "hot")
    monkeypatch.delenv("NOVA_TEST_REQUIRED", raising=False)
    with pytest.raises(SettingError, match="NOVA_TEST_REQUIRED is not set"):
        setting_int("NOVA_TEST_REQUIRED")
