"""A team's body retention: the values it may take, and the stricter of two settings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.admission.config import StaticPolicy, TeamSpec
from inferenceops.config.spec import ConfigError, parse_platform
from inferenceops.control.policy import assemble_policy
from inferenceops.platform.retention import DEFAULT, MAX_DAYS, Retention, stricter
from inferenceops.store.records import IdentityData, TeamRecord

retentions = st.one_of(st.just(Retention("none")), st.just(Retention("zero")),
                       st.integers(1, MAX_DAYS).map(lambda d: Retention("store", d)))
#: How much each keeps, for comparing: zero keeps nothing, none no body, store its days.
KEEPS = {"zero": -1, "none": 0}


def kept(r: Retention) -> int:
    return r.days if r.days is not None else KEEPS[r.mode]


@pytest.mark.parametrize(("mode", "days"), [("store", None), ("none", 3), ("zero", 1),
                                            ("store", 0), ("store", MAX_DAYS + 1), ("keep", None)])
def test_a_retention_that_makes_no_sense_is_refused(mode: str, days: int | None) -> None:
    with pytest.raises(ValueError):
        Retention(mode, days)


@given(a=retentions, b=retentions)
def test_the_stricter_of_two_is_one_of_them_keeps_no_more_than_either_and_ignores_order(
        a: Retention, b: Retention) -> None:
    chosen = stricter(a, b)
    assert chosen in (a, b)
    assert kept(chosen) == min(kept(a), kept(b))
    assert stricter(b, a) == chosen


def test_zero_beats_everything_and_none_beats_store() -> None:
    assert stricter(Retention("store", 30), Retention("zero")) == Retention("zero")
    assert stricter(Retention("store", 30), DEFAULT) == DEFAULT
    assert stricter(Retention("store", 30), Retention("store", 7)) == Retention("store", 7)


def test_the_platform_file_and_the_store_combine_to_the_stricter() -> None:
    teams = (TeamRecord("t1", "legal", 1, None, None, "store", 30),  # type: ignore[arg-type]
             TeamRecord("t2", "health", 1, None, None, "store", 5),  # type: ignore[arg-type]
             TeamRecord("t3", "ml", 1, None, None))  # type: ignore[arg-type]
    static = StaticPolicy(teams=(TeamSpec(name="legal", retention="store", retention_days=7),
                                 TeamSpec(name="health", retention="zero"),
                                 TeamSpec(name="absent", retention="zero")))
    policy = assemble_policy(static, None, IdentityData(0, (), teams, (), (), (), ()))
    assert dict(policy.retention) == {"t1": Retention("store", 7), "t2": Retention("zero")}


@pytest.mark.parametrize(("team", "says"), [
    ("{name: a, retention: store}", "line 6: teams.0.: 'retention_days' is required"),
    ("{name: a, retention_days: 3}", "line 6: teams.0.: 'retention_days' is required"),
    ("{name: a, retention: forever}", "line 6: teams.0..retention"),
    ("{name: a, retention: store, retention_days: 0}", "line 6: teams.0..retention_days"),
])
def test_a_bad_retention_in_the_platform_file_is_refused_naming_it(team: str, says: str) -> None:
    text = ("deployments:\n  - {name: d, engine: simulator, served_model: m, profile: test-fast}\n"
            "models:\n  - {name: m, deployment: d}\nteams:\n  - %s\n")
    parse_platform(text % "{name: a, retention: store, retention_days: 3}", source="p.yaml",
                   loopback_base_url="http://127.0.0.1:1", environ={})  # the right one is fine
    with pytest.raises(ConfigError, match=says) as refused:
        parse_platform(text % team, source="p.yaml", loopback_base_url="http://127.0.0.1:1",
                       environ={})
    assert str(refused.value).count("line ") == 1, refused.value
