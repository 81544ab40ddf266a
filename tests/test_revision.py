"""`lerobot@REV`: resolving a revision of a LeRobot repository and extracting its package into the cache.

Resolution, layouts, the cache and every usage error run on a tiny synthetic repository (git only). The tests on a
repository built from the installed LeRobot (`tests/lerobot_repo.py`) skip without LeRobot's source; the one that
runs each tag's ACT also needs a Python that imports LeRobot (`ACT_EQUIV_LEROBOT_PYTHON`).
"""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lerobot_repo import EDITS, MAIN, MODELING, TAGS, bare_copy, git, lerobot_python, lerobot_source, make_repo

from act_equiv.errors import UsageError
from act_equiv.targets import revision
from act_equiv.targets.revision import CACHE_ENV, WORKTREE, Revision, is_revision, materialize

SRC_MODELING = Path("lerobot/policies/act/modeling_act.py")
COMMON_MODELING = Path("lerobot/common/policies/act/modeling_act.py")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache per test, so no test reads another's extraction."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "lerobot"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tags `before` (no LeRobot), `v0` (common layout, also branch `legacy`), `v1` (src layout, branch `main`)."""
    repo = tmp_path_factory.mktemp("tiny") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", MAIN)
    _write(repo / "README.md", "LeRobot, one day\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "readme")
    git(repo, "tag", "before")
    _write(repo / "lerobot" / "__init__.py", "")
    _write(repo / COMMON_MODELING, "LAYOUT = 'common'\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "common layout")
    git(repo, "tag", "-a", "v0", "-m", "v0")
    git(repo, "branch", "legacy")
    (repo / "src").mkdir()
    git(repo, "mv", "lerobot", "src/lerobot")
    git(repo, "mv", "src/lerobot/common/policies", "src/lerobot/policies")
    _write(repo / "src" / SRC_MODELING, "LAYOUT = 'src'\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "src layout")
    git(repo, "tag", "-a", "v1", "-m", "v1")
    return repo


@pytest.fixture(scope="module")
def tiny_bare(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bare_copy(tiny, tmp_path_factory.mktemp("tiny_bare") / "repo.git")


def _sha(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", f"{rev}^{{commit}}")


def _usage_error(spec: str, repo: Path | str | None) -> str:
    with pytest.raises(UsageError) as caught:
        materialize(spec, repo)
    message = str(caught.value)
    assert "\n" not in message and "CalledProcessError" not in message
    return message


def test_only_lerobot_at_specs_are_revisions() -> None:
    assert is_revision("lerobot@v1") and is_revision(f"lerobot@{WORKTREE}")
    assert not is_revision("lerobot") and not is_revision("act_equiv.models:ACT") and not is_revision("mutant:x")


@pytest.mark.parametrize("rev", ["v1", MAIN, "HEAD", "FULL", "SHORT"])
def test_a_tag_branch_head_or_sha_resolves_to_its_commit(tiny: Path, rev: str) -> None:
    sha = _sha(tiny, "v1")
    rev = {"FULL": sha, "SHORT": sha[:7]}.get(rev, rev)
    found = materialize(f"lerobot@{rev}", tiny)
    assert found == Revision(f"lerobot@{rev}", tiny, rev, sha, "src", found.root)
    assert found.policies_package == "lerobot.policies"
    assert (found.root / SRC_MODELING).read_text() == "LAYOUT = 'src'\n"
    assert sorted(p.name for p in found.root.iterdir()) == ["lerobot"]


@pytest.mark.parametrize("rev", ["v0", "legacy"])
def test_the_pre_2025_layout_is_detected_and_extracted_with_the_package_at_the_root(tiny: Path, rev: str) -> None:
    found = materialize(f"lerobot@{rev}", tiny)
    assert (found.commit, found.layout) == (_sha(tiny, "v0"), "common")
    assert found.policies_package == "lerobot.common.policies"
    assert (found.root / COMMON_MODELING).read_text() == "LAYOUT = 'common'\n"


@pytest.mark.parametrize(("rev", "layout", "modeling"),
                         [("v1", "src", SRC_MODELING), ("v0", "common", COMMON_MODELING)])
def test_a_bare_repository_is_read_like_a_clone(tiny: Path, tiny_bare: Path, rev: str, layout: str,
                                                 modeling: Path) -> None:
    found = materialize(f"lerobot@{rev}", tiny_bare)
    assert (found.repo, found.commit, found.layout) == (tiny_bare, _sha(tiny, rev), layout)
    assert (found.root / modeling).is_file()


def test_the_repository_defaults_to_the_current_directory_and_may_be_a_subdirectory(
        tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny)
    assert materialize("lerobot@v1").repo == tiny
    inside = tiny / "src" / "lerobot"
    for rev, modeling in (("v1", SRC_MODELING), ("v0", COMMON_MODELING), (WORKTREE, SRC_MODELING)):
        found = materialize(f"lerobot@{rev}", inside)
        assert found.repo == inside and (found.root / modeling).is_file(), rev


def test_git_environment_of_a_hook_does_not_redirect_the_repository(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(tmp_path, "init", "-q", "other")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "other" / ".git"))
    assert materialize("lerobot@v1", tiny).commit == _sha(tiny, "v1")


def test_describe_names_the_spec_short_sha_layout_and_repository(tiny: Path) -> None:
    found = materialize("lerobot@v0", tiny)
    assert found.describe() == f"lerobot@v0 ({found.commit[:7]}, common layout, {tiny})"


def test_a_commit_is_extracted_once_then_read_from_the_cache(
        tiny: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []
    run = subprocess.run
    monkeypatch.setattr(revision.subprocess, "run", lambda argv, **kw: commands.append(argv) or run(argv, **kw))
    first = materialize("lerobot@v1", tiny)
    assert first.root == cache / first.commit
    assert sum("archive" in argv for argv in commands) == 1
    commands.clear()
    (first.root / "marker").write_text("")
    second = materialize(f"lerobot@{first.commit[:9]}", tiny)
    assert second.root == first.root and (second.root / "marker").is_file()
    assert commands and not any("archive" in argv or "tar" in argv for argv in commands)


def test_concurrent_extractions_of_one_commit_publish_one_directory(
        tiny: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every extraction waits for the others before publishing, so three of the four lose the rename."""
    extract, everyone = revision._archive, threading.Barrier(4, timeout=30)
    monkeypatch.setattr(revision, "_archive", lambda *args: (extract(*args), everyone.wait())[0])
    with ThreadPoolExecutor(4) as pool:
        roots = {r.root for r in pool.map(lambda _: materialize("lerobot@v1", tiny), range(4))}
    [root] = roots
    assert [p.name for p in cache.iterdir()] == [root.name]  # the losers' staging directories are gone
    assert (root / SRC_MODELING).is_file()


@pytest.fixture
def checkout(tiny: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tiny), str(clone))
    return clone


def test_worktree_copies_the_files_on_disk_keyed_by_their_content(checkout: Path, cache: Path) -> None:
    modeling = checkout / "src" / SRC_MODELING
    modeling.write_text("LAYOUT = 'edited'\n")
    _write(modeling.parent / "__pycache__" / "modeling_act.cpython-311.pyc", "stale")
    edited = materialize(f"lerobot@{WORKTREE}", checkout)
    assert (edited.commit, edited.layout, edited.repo) == (WORKTREE, "src", checkout)
    assert (edited.root / SRC_MODELING).read_text() == "LAYOUT = 'edited'\n"
    assert not (edited.root / SRC_MODELING).with_name("__pycache__").exists()
    assert edited.describe() == f"lerobot@{WORKTREE} (files on disk, src layout, {checkout})"
    assert materialize(f"lerobot@{WORKTREE}", checkout).root == edited.root  # same files, same entry
    modeling.write_text("LAYOUT = 'edited again'\n")
    again = materialize(f"lerobot@{WORKTREE}", checkout)
    assert again.root != edited.root and (again.root / SRC_MODELING).read_text() == "LAYOUT = 'edited again'\n"
    assert len(list(cache.iterdir())) == 2


def test_worktree_reads_the_pre_2025_layout(checkout: Path) -> None:
    git(checkout, "checkout", "-q", "legacy")
    found = materialize(f"lerobot@{WORKTREE}", checkout)
    assert found.layout == "common" and (found.root / COMMON_MODELING).is_file()


def test_a_revision_holding_both_layouts_is_read_as_the_newer_one(checkout: Path) -> None:
    _write(checkout / COMMON_MODELING, "LAYOUT = 'common'\n")
    assert materialize(f"lerobot@{WORKTREE}", checkout).layout == "src"
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "both layouts")
    assert materialize("lerobot@HEAD", checkout).layout == "src"


# Usage errors: one line each, naming what was wrong and what is accepted.


def test_a_missing_repository_path_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    message = _usage_error("lerobot@v1", missing)
    assert f"lerobot_repo='{missing}' does not exist" in message and "git clone or bare repository" in message
    with pytest.raises(UsageError) as caught:
        materialize("lerobot@v1", missing)
    assert caught.value.for_flags().startswith(f"--lerobot-repo '{missing}' does not exist")


def test_a_file_is_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert "is not a directory" in _usage_error("lerobot@v1", tmp_path / "file")


def test_a_plain_directory_is_not_a_git_repository(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    message = _usage_error("lerobot@v1", tmp_path / "plain")
    assert f"lerobot_repo='{tmp_path / 'plain'}' is not a git repository" in message


@pytest.mark.parametrize("rev", ["nope", "--all", "0123456789abcdef"])
def test_an_unknown_revision_is_named_with_existing_branches_and_tags(tiny: Path, rev: str) -> None:
    message = _usage_error(f"lerobot@{rev}", tiny)
    assert f"revision {rev!r} is not a commit" in message
    for ref in (MAIN, "legacy", "v0", "v1", "before"):
        assert ref in message
    assert "HEAD" in message and WORKTREE in message


def test_a_repository_without_commits_says_it_has_no_branches_or_tags(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "empty")
    assert "it has no branches or tags" in _usage_error("lerobot@HEAD", tmp_path / "empty")


def test_a_spec_without_a_revision_is_a_usage_error(tiny: Path) -> None:
    for spec in ("lerobot@", "lerobot"):
        assert "use lerobot@REV" in _usage_error(spec, tiny)


@pytest.mark.parametrize("where", ["commit", WORKTREE])
def test_a_revision_without_lerobot_act_names_both_paths_looked_for(tiny: Path, tmp_path: Path, where: str) -> None:
    if where == WORKTREE:
        git(tmp_path, "init", "-q", "empty")
        message = _usage_error(f"lerobot@{WORKTREE}", tmp_path / "empty")
    else:
        message = _usage_error("lerobot@before", tiny)
        assert _sha(tiny, "before")[:7] in message
    assert "is not a LeRobot repository" in message
    assert "src/lerobot/policies/act/modeling_act.py" in message
    assert "lerobot/common/policies/act/modeling_act.py" in message


def test_worktree_of_a_bare_repository_is_a_usage_error(tiny_bare: Path) -> None:
    assert "is a bare repository, which has no files on disk" in _usage_error(f"lerobot@{WORKTREE}", tiny_bare)


def test_missing_git_is_a_usage_error(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "git is not installed" in _usage_error("lerobot@v1", tiny)


def test_an_unwritable_cache_names_its_variable(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a_file"))
    assert f"set {CACHE_ENV} to a writable directory" in _usage_error("lerobot@v1", tiny)


# A repository built from the installed LeRobot.


@pytest.fixture(scope="module")
def lerobot_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        package = lerobot_source()
    except LookupError as reason:
        pytest.skip(str(reason))
    return make_repo(tmp_path_factory.mktemp("lerobot") / "repo", package)


@pytest.fixture(scope="module", params=["clone", "bare"])
def lerobot_repos(request: pytest.FixtureRequest, lerobot_repo: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "clone":
        return lerobot_repo
    return bare_copy(lerobot_repo, tmp_path_factory.mktemp("lerobot_bare") / "repo.git")


@pytest.mark.parametrize("tag", TAGS)
def test_each_tag_of_the_lerobot_repository_materializes(lerobot_repos: Path, tag: str) -> None:
    found = materialize(f"lerobot@{tag}", lerobot_repos)
    layout, modeling = ("common", COMMON_MODELING) if tag == "old-release" else ("src", SRC_MODELING)
    assert (found.layout, found.commit) == (layout, _sha(lerobot_repos, tag))
    text = (found.root / modeling).read_text()
    edit = EDITS.get("stacked-images" if tag == "old-release" else tag)
    assert all(new in text for _, new in edit.replacements) if edit else "decoder_in," in text
    assert (found.root / "lerobot" / "configs").is_dir() and not any(found.root.rglob("__pycache__"))
    if tag == "old-release":
        assert "from lerobot.common.policies.act.configuration_act import ACTConfig" in text
        assert not (found.root / "lerobot" / "policies").exists()


def test_lerobot_worktree_and_abbreviated_sha(lerobot_repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(lerobot_repo), str(clone))
    git(clone, "checkout", "-q", "numeric")
    short = _sha(clone, "numeric")[:10]
    assert materialize(f"lerobot@{short}", clone).root == materialize("lerobot@numeric", clone).root
    modeling = clone / "src" / "lerobot" / MODELING
    modeling.write_text(modeling.read_text() + "\nUNCOMMITTED = True\n")
    found = materialize(f"lerobot@{WORKTREE}", clone)
    assert (found.root / SRC_MODELING).read_text().endswith("UNCOMMITTED = True\n")


PROBE = """
import importlib, json, sys
import torch

def run(root, policies):
    for name in [m for m in sys.modules if m == "lerobot" or m.startswith("lerobot.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    try:
        modeling = importlib.import_module(policies + ".act.modeling_act")
        types = importlib.import_module("lerobot.configs.types")
        feature, kind = types.PolicyFeature, types.FeatureType
        config = modeling.ACTConfig(
            input_features={"observation.state": feature(type=kind.STATE, shape=(3,)),
                            "observation.environment_state": feature(type=kind.ENV, shape=(2,))},
            output_features={"action": feature(type=kind.ACTION, shape=(2,))},
            chunk_size=4, n_action_steps=4, dim_model=16, n_heads=2, dim_feedforward=16, n_encoder_layers=1,
            n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=4, dropout=0.0,
            pretrained_backbone_weights=None, device="cpu")
        torch.manual_seed(0)
        policy = modeling.ACTPolicy(config)
        g = torch.Generator().manual_seed(1)
        batch = {"observation.state": torch.randn(2, 3, generator=g),
                 "observation.environment_state": torch.randn(2, 2, generator=g),
                 "action": torch.randn(2, 4, 2, generator=g),
                 "action_is_pad": torch.tensor([[False, False, True, True], [False, False, False, True]])}
        with torch.no_grad():
            actions, _ = policy.eval().model(batch)
        torch.manual_seed(2)
        loss, _ = policy.train().forward(batch)
        return {"module": modeling.__file__, "actions": actions.flatten().tolist(), "loss": loss.item()}
    finally:
        sys.path.remove(root)

print(json.dumps({tag: run(root, policies) for tag, root, policies in json.loads(sys.argv[1])}))
"""
"""Each tag's ACTPolicy on one fixed batch: inner-model actions (eval) and the training loss (padded batch)."""


PROBED = ("installed", "refactor", "old-release", "stacked-images", "numeric", "policy-loss")
"""The tags whose eager behaviour the probe pins down. The others are asserted where each is gated: `cat-refactor`
passes on every form (tests/test_ci_workflow.py); the rest change only what shows compiled, exported, in a
checkpoint or over optimizer steps (tests/test_gate_pr.py, tests/test_gate_revisions.py). Every tag's extracted
source holds its edit (above)."""


def test_each_tag_changes_exactly_what_it_says(lerobot_repo: Path) -> None:
    python = lerobot_python()
    if python is None:
        pytest.skip("running LeRobot's ACT needs a Python that imports lerobot: set ACT_EQUIV_LEROBOT_PYTHON")
    revisions = {tag: materialize(f"lerobot@{tag}", lerobot_repo) for tag in PROBED}
    argument = json.dumps([[tag, str(r.root), r.policies_package] for tag, r in revisions.items()])
    done = subprocess.run([python, "-c", PROBE, argument], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    for tag, found in revisions.items():  # each tag ran its own extracted source
        assert Path(out[tag]["module"]).is_relative_to(found.root)
    installed = out["installed"]
    for tag in ("refactor", "old-release", "stacked-images"):
        assert out[tag]["actions"] == installed["actions"] and out[tag]["loss"] == installed["loss"], tag
    numeric = max(abs(a - b) for a, b in zip(out["numeric"]["actions"], installed["actions"], strict=True))
    assert numeric > 1e-4 * max(map(abs, installed["actions"])), numeric  # float32 rounding is ~1e-7 relative
    assert out["policy-loss"]["actions"] == installed["actions"]
    assert out["policy-loss"]["loss"] != installed["loss"]
