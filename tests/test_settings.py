"""The search's and the bench's settings: each validated once, when built, with a message that names the setting
(as the caller's flag on the command line) and what it accepts."""

from __future__ import annotations

import pytest
from hypothesis import settings

from act_equiv import profiles
from act_equiv.cli import main
from act_equiv.errors import UsageError
from act_equiv.profiles import PROFILE_ENV, PROFILES
from act_equiv.settings import SHRINK_BUDGET, Bench, Search


def test_a_search_left_unset_takes_the_default_profile_and_its_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "thorough")
    assert Search() == Search("thorough", PROFILES["thorough"]["max_examples"], None, None, SHRINK_BUDGET)
    given = Search(profile="ci", max_examples=2, time_budget=5, seed=1, shrink_budget=0)
    assert (given.max_examples, given.time_budget, given.shrink_budget) == (2, 5.0, 0.0)


@pytest.mark.parametrize(("keywords", "message"), [
    ({"profile": "quick"}, "profile='quick' is invalid: one of ['ci', 'dev', 'thorough']"),
    ({"max_examples": 0}, "max_examples=0 is invalid: an int >= 1"),
    ({"max_examples": -3}, "max_examples=-3 is invalid: an int >= 1"),
    ({"time_budget": 0}, "time_budget=0 is invalid: seconds > 0"),
    ({"seed": 1.5}, "seed=1.5 is invalid: an int"),
    ({"shrink_budget": -1.0}, "shrink_budget=-1.0 is invalid: seconds >= 0 (0: none)"),
])
def test_a_bad_search_setting_names_itself_and_what_it_accepts(keywords: dict, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        Search(**keywords)
    assert str(caught.value) == message and caught.value.settings == tuple(keywords)


def test_a_bad_profile_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "quick")
    with pytest.raises(UsageError, match=rf"{PROFILE_ENV}='quick' is invalid: one of \['ci', 'dev', 'thorough'\]"):
        Search()


@pytest.mark.parametrize(("keywords", "message"), [
    ({"num_runs": 0}, "num_runs=0 is invalid: an int >= 1"),
    ({"warmup": -1}, "warmup=-1 is invalid: an int >= 1"),
    ({"batch_size": 2.0}, "batch_size=2.0 is invalid: an int >= 1"),
    ({"training": True, "forms": ("compiled", "exported")},
     "forms='exported' time inference only, not training steps: give them without training"),
])
def test_a_bad_bench_setting_names_itself_and_what_it_accepts(keywords: dict, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        Bench(**keywords)
    assert str(caught.value) == message


@pytest.mark.parametrize(("flags", "message"), [
    (["--profile", "nope"], "--profile 'nope' is invalid: one of ['ci', 'dev', 'thorough']"),
    (["--max-examples", "0"], "--max-examples 0 is invalid: an int >= 1"),
    (["--time-budget", "-5"], "--time-budget -5.0 is invalid: seconds > 0"),
    (["--shrink-budget", "-1"], "--shrink-budget -1.0 is invalid: seconds >= 0 (0: none)"),
])
def test_check_and_mutants_refuse_a_bad_search_option_before_anything_runs(
        flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--max-examples 0` once fell back to the profile's count without a word."""
    assert main(["check", *flags]) == 2
    assert capsys.readouterr().err == f"act-equiv check: {message}\n"
    if flags[0] != "--shrink-budget":  # mutants takes --no-shrink instead
        assert main(["mutants", *flags]) == 2
        assert capsys.readouterr().err == f"act-equiv mutants: {message}\n"


def test_a_search_reads_act_equivs_profiles_from_its_table_and_any_other_from_hypothesis() -> None:
    """A check needs no registration of act_equiv's profiles first; a profile of the caller's own still works."""
    assert (profiles.settings_for("ci").max_examples, profiles.settings_for("ci").derandomize) == (9, True)
    assert profiles.settings_for("default").max_examples == settings.get_profile("default").max_examples
