"""`lerobot@REV`: LeRobot's package as it is at one revision of a LeRobot git repository, ready to import.

REV is a commit (full or abbreviated sha), a tag, a branch, `HEAD`, or `WORKTREE` (the checkout's files as they are
on disk, committed or not). The repository may be a clone or a bare repository. Two source layouts are known:
`src/lerobot/...` (LeRobot since mid-2025) and `lerobot/common/policies/...` (before), told apart by where
`policies/act/modeling_act.py` lies at that revision.

A revision's package is extracted once into a cache, `$ACT_EQUIV_CACHE/lerobot/<key>/lerobot/...`
(`~/.cache/act_equiv` when the variable is unset), and imported from there by putting `Revision.root` first on
`sys.path`. The key of a commit is its full sha: a commit's content never changes, so the extraction is reused by
every later run and every parallel worker. `WORKTREE` is keyed by a hash of the copied files: the same files share
one directory, and an edit gets a new one, so a process never imports a stale copy. Each extraction is written into
a private temporary directory and renamed into place, so processes extracting the same key at once (pytest-xdist
workers) never see a half-written package; the loser of the race discards its copy.

Only `git` (and `tar`, to unpack `git archive`) are run; no checkout or worktree of the repository is touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from act_equiv.errors import UsageError

__all__ = ["CACHE_ENV", "GIT_LOCATING_ENV", "LAYOUTS", "REVISION_PREFIX", "WORKTREE", "Layout", "Revision",
           "is_revision", "materialize"]

REVISION_PREFIX = "lerobot@"
WORKTREE = "WORKTREE"
CACHE_ENV = "ACT_EQUIV_CACHE"
_PACKAGE = "lerobot"
_SETTING = "lerobot_repo"
_REVS = f"a commit sha, tag, branch, HEAD or {WORKTREE}"

GIT_LOCATING_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
                    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_CEILING_DIRECTORIES")
"""Variables that would make git look at another repository than `--lerobot-repo` (git sets some of them while
running hooks, so a test run from a hook would otherwise read the hook's repository)."""


@dataclass(frozen=True)
class Layout:
    """Where a LeRobot source tree keeps its package and its policies."""

    name: str
    parent: str
    """The repository directory holding the package directory `lerobot` ("" for the repository root)."""
    policies: str
    """The dotted name of the policies package."""

    @property
    def modeling(self) -> str:
        """The repository path of ACT's modeling module, whose presence identifies the layout."""
        return "/".join([*filter(None, [self.parent]), *self.policies.split("."), "act", "modeling_act.py"])


LAYOUTS: tuple[Layout, ...] = (
    Layout("src", "src", "lerobot.policies"),
    Layout("common", "", "lerobot.common.policies"),
)
"""Known layouts, newest first: a revision holding both is read as the newer one."""


@dataclass(frozen=True)
class Revision:
    """A materialised `lerobot@REV`: its package lies under `root`, ready for `sys.path`."""

    spec: str
    repo: Path
    """The repository path as given, resolved."""
    rev: str
    """The revision as given."""
    commit: str
    """The full sha, or `WORKTREE`."""
    layout: str
    """A `Layout.name`: "src" or "common"."""
    root: Path
    """The directory to put first on `sys.path`: it holds the package directory `lerobot`."""

    @property
    def policies_package(self) -> str:
        """`lerobot.policies` or `lerobot.common.policies`."""
        return _layout(self.layout).policies

    @property
    def content(self) -> str:
        """What the side's code is: the commit's full sha, or for `WORKTREE` the key of the copied files' hash."""
        return self.root.name if self.commit == WORKTREE else self.commit

    def describe(self) -> str:
        """One line for reports: `lerobot@v1.2 (3f2a9c1, src layout, /path/repo)`."""
        what = "files on disk" if self.commit == WORKTREE else self.commit[:7]
        return f"{self.spec} ({what}, {self.layout} layout, {self.repo})"


def is_revision(spec: str) -> bool:
    """Whether `spec` names a LeRobot revision (`lerobot@REV`)."""
    return spec.startswith(REVISION_PREFIX)


def materialize(spec: str, repo: str | Path | None = None) -> Revision:
    """Resolve `lerobot@REV` in `repo` (default: the current directory) and extract its package into the cache.

    Raises `UsageError` for a missing path, a directory that is no git repository, a revision that is unknown or
    holds no LeRobot ACT, `WORKTREE` of a bare repository, and a missing `git`."""
    if not is_revision(spec) or spec == REVISION_PREFIX:
        raise UsageError(f"{spec!r} names no LeRobot revision: use {REVISION_PREFIX}REV with REV {_REVS}")
    rev = spec.removeprefix(REVISION_PREFIX)
    path = Path.cwd() if repo is None else Path(repo).expanduser()
    path = path.resolve()
    if not path.exists():
        raise UsageError(f"{_SETTING}='{path}' does not exist: give a LeRobot git clone or bare repository", _SETTING)
    if not path.is_dir():
        raise UsageError(f"{_SETTING}='{path}' is not a directory: give a LeRobot git clone or bare repository",
                         _SETTING)
    probe = _git(path, "rev-parse", "--is-bare-repository")
    if probe.returncode != 0:
        raise UsageError(f"{_SETTING}='{path}' is not a git repository ({_first_line(probe.stderr)}): give a "
                         f"LeRobot git clone or bare repository", _SETTING)
    bare = probe.stdout.strip() == "true"
    if rev == WORKTREE and bare:
        raise UsageError(f"{spec!r}: {_SETTING}='{path}' is a bare repository, which has no files on disk: use a "
                         f"clone for {WORKTREE}, or name a commit, tag or branch", _SETTING)
    # A clone is read from the top of its checkout: git archive's paths are relative to the working directory.
    top = path if bare else Path(_git_ok(path, "rev-parse", "--show-toplevel"))
    if rev == WORKTREE:
        layout = _worktree_layout(spec, path, top)
        return Revision(spec, path, rev, WORKTREE, layout.name, _copy_worktree(top / layout.parent / _PACKAGE))
    commit = _commit(spec, path, top, rev)
    layout = _commit_layout(spec, path, top, commit)
    root = _cache() / commit
    if not root.is_dir():
        _publish(_archive(top, commit, layout), root)
    return Revision(spec, path, rev, commit, layout.name, root)


def _layout(name: str) -> Layout:
    return next(layout for layout in LAYOUTS if layout.name == name)


def _not_lerobot(spec: str, path: Path, where: str) -> UsageError:
    looked = " nor ".join(layout.modeling for layout in LAYOUTS)
    return UsageError(f"{spec!r}: {_SETTING}='{path}' is not a LeRobot repository at {where}: neither {looked} "
                      f"exists there", _SETTING)


def _commit(spec: str, path: Path, top: Path, rev: str) -> str:
    """The full sha `rev` names (a tag is peeled to its commit)."""
    if not rev.startswith("-"):  # no ref starts with "-"; git would read it as an option
        found = _git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if found.returncode == 0:
            return found.stdout.strip()
    refs = _git(top, "for-each-ref", "--sort=-creatordate", "--count=8", "--format=%(refname:short)",
                "refs/heads", "refs/tags").stdout.split()
    known = f"existing branches and tags include {', '.join(refs)}" if refs else "it has no branches or tags"
    raise UsageError(f"{spec!r}: revision {rev!r} is not a commit of {_SETTING}='{path}' ({known}): use {_REVS}",
                     _SETTING)


def _commit_layout(spec: str, path: Path, top: Path, commit: str) -> Layout:
    for layout in LAYOUTS:
        if _git(top, "cat-file", "-e", f"{commit}:{layout.modeling}").returncode == 0:
            return layout
    raise _not_lerobot(spec, path, f"commit {commit[:7]}")


def _worktree_layout(spec: str, path: Path, top: Path) -> Layout:
    for layout in LAYOUTS:
        if (top / layout.modeling).is_file():
            return layout
    raise _not_lerobot(spec, path, f"its files on disk ({top})")


def _archive(top: Path, commit: str, layout: Layout) -> Path:
    """A temporary directory in the cache holding `lerobot/` as it is at `commit`."""
    tree = f"{commit}:{layout.parent}" if layout.parent else commit  # `lerobot/` then lies at the archive's top
    archive = _run(["git", "-C", str(top), "archive", "--format=tar", tree, _PACKAGE], binary=True)
    if archive.returncode != 0:
        raise UsageError(f"git archive of {commit[:7]} in {_SETTING}='{top}' failed: "
                         f"{_first_line(archive.stderr.decode(errors='replace'))}", _SETTING)
    staging = _staging()
    unpacked = _run(["tar", "-x", "-C", str(staging)], stdin=archive.stdout, binary=True)
    if unpacked.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"cannot unpack {commit[:7]} into {staging.parent}: "
                         f"{_first_line(unpacked.stderr.decode(errors='replace'))}; set {CACHE_ENV} to a writable "
                         f"directory with free space")
    return staging


def _copy_worktree(package: Path) -> Path:
    """The cache directory holding a copy of `package` (without bytecode), keyed by the copy's content."""
    staging = _staging()
    shutil.copytree(package, staging / _PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for file in sorted(p for p in staging.rglob("*") if p.is_file()):
        digest.update(file.relative_to(staging).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    root = _cache() / f"{WORKTREE.lower()}-{digest.hexdigest()[:20]}"
    _publish(staging, root)
    return root


def _cache() -> Path:
    """The directory holding one extracted package per key."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "act_equiv") / _PACKAGE


def _staging() -> Path:
    """A fresh private directory next to the cache entries, so publishing it is a rename on one file system."""
    try:
        _cache().mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=_cache()))
    except OSError as error:
        raise UsageError(f"cannot write the LeRobot revision cache {_cache()} ({error}): set {CACHE_ENV} to a "
                         f"writable directory") from error


def _publish(staging: Path, root: Path) -> None:
    """Rename `staging` to `root` atomically; when another process published `root` first, keep theirs."""
    try:
        staging.rename(root)
    except OSError:
        if not root.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(["git", "-C", str(path), *args])


def _git_ok(path: Path, *args: str) -> str:
    """The stripped output of a git command that cannot fail once `path` is known to be a repository."""
    done = _git(path, *args)
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed in {_SETTING}='{path}': {_first_line(done.stderr)}", _SETTING)
    return done.stdout.strip()


def _run(argv: list[str], stdin: bytes | None = None, binary: bool = False) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in GIT_LOCATING_ENV}
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=not binary, env=env, check=False)
    except FileNotFoundError as error:
        raise UsageError(f"{argv[0]} is not installed (not found on PATH): {REVISION_PREFIX}REV reads the LeRobot "
                         f"repository with git and tar") from error


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")
