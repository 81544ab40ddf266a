"""A small LeRobot git repository built from an installed LeRobot package, to test `lerobot@REV` against.

Branch `main` holds one commit, tagged `installed`: `src/lerobot` is a copy of the installed package (without
bytecode). Each other tag is one commit on top of `installed` (annotated tags, no branches), but `old-release`:

- `refactor`: a rename of a local variable in ACT's forward; numerics stay bitwise.
- `numeric`: ACT's forward scales the encoder's 1D position embedding by 1.001 (outputs change far beyond float32
  rounding).
- `policy-loss`: ACTPolicy's l1 loss no longer masks padded actions; the inner ACT is untouched.
- `stacked-images`: the image contract before 2025-03: the policy stacks the cameras into one (B, n_cameras, C, H, W)
  tensor and the inner ACT loops over `shape[-4]`; same numerics where the cameras share one shape.
- `cat-refactor`: the encoder tokens built by `torch.cat` of per-source blocks instead of lists of tokens and
  `torch.stack` (the refactor that lets `torch.compile` capture the forward); numerics stay bitwise.
- `graph-break`: a defensive NaN check on the encoder output (`if torch.isnan(x).any(): raise`): eager numerics
  unchanged, but a data-dependent branch that breaks the compiled graph and refuses torch.export.
- `compiled-drift`: the encoder output scaled by 1.001 only while `torch.compiler.is_compiling()`: a stand-in for a
  miscompile (as dynamo's `*_TESTING_ONLY` injection is); eager numerics unchanged.
- `compiled-policy`: `ACTPolicy.__init__` wraps its model in `torch.compile`, so the policy's state_dict keys gain
  `_orig_mod.` and published checkpoints no longer load strictly.
- `checkpoint-half`: `ACTPolicy._save_pretrained` writes its weights in half precision (a smaller file): the state_dict
  keys and the numerics are unchanged, but a checkpoint no longer gives the weights back.
- `optim-groups`: `ACTPolicy.get_optim_params`' backbone group filters on `model.vision_backbone` (a rename done in
  one place only): the backbone is in no parameter group, so it never trains; forward, loss and gradients are
  untouched.
- `old-release`: LeRobot before 2025-03 as a whole: `stacked-images`' contract in the pre-2025 layout, `lerobot/` at
  the repository root with the policies in `lerobot/common/policies` and every `lerobot.policies` rewritten to
  `lerobot.common.policies` (one commit on top of `stacked-images`); same numerics where the cameras share one shape.

The edits are exact string replacements checked against LeRobot 0.4.4's modeling_act.py: a LeRobot whose source
differs fails loudly here instead of yielding a tag that changes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from act_equiv.targets.revision import GIT_LOCATING_ENV

__all__ = ["EDITS", "MAIN", "TAGS", "Edit", "bare_copy", "git", "lerobot_python", "lerobot_source", "make_repo",
           "worktree_with"]

MAIN = "main"
MODELING = "policies/act/modeling_act.py"
IDENTITY = ("-c", "user.name=act_equiv tests", "-c", "user.email=tests@act-equiv.invalid")
DATE = "2025-01-01T00:00:00+0000"
"""Every commit's date: the same installed LeRobot gives the same commit shas in every build, so repositories built
by parallel test workers share one cache entry per commit."""
SRC_ENV = "ACT_EQUIV_LEROBOT_SRC"
PYTHON_ENV = "ACT_EQUIV_LEROBOT_PYTHON"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


@dataclass(frozen=True)
class Edit:
    """Replacements in one file of the package, each of which must occur exactly once."""

    path: str
    """Relative to the package directory `lerobot`."""
    replacements: tuple[tuple[str, str], ...]

    def apply(self, package: Path) -> None:
        file = package / self.path
        text = file.read_text()
        for old, new in self.replacements:
            assert text.count(old) == 1, f"{self.path}: expected {old!r} exactly once, found {text.count(old)}"
            text = text.replace(old, new)
        file.write_text(text)


EDITS: dict[str, Edit] = {
    "refactor": Edit(MODELING, (
        ("        decoder_in = torch.zeros(\n", "        decoder_queries = torch.zeros(\n"),
        ("            decoder_in,\n", "            decoder_queries,\n"),
    )),
    "numeric": Edit(MODELING, ((
        "encoder_in_pos_embed = list(self.encoder_1d_feature_pos_embed.weight.unsqueeze(1))",
        "encoder_in_pos_embed = list((self.encoder_1d_feature_pos_embed.weight * 1.001).unsqueeze(1))",
    ),)),
    "policy-loss": Edit(MODELING, ((
        'F.l1_loss(batch[ACTION], actions_hat, reduction="none") * ~batch["action_is_pad"].unsqueeze(-1)',
        'F.l1_loss(batch[ACTION], actions_hat, reduction="none")',
    ),)),
    "stacked-images": Edit(MODELING, (
        ("            batch[OBS_IMAGES] = [batch[key] for key in self.config.image_features]\n\n        actions = ",
         "            batch[OBS_IMAGES] = torch.stack([batch[key] for key in self.config.image_features], dim=-4)\n\n"
         "        actions = "),
        ("            batch[OBS_IMAGES] = [batch[key] for key in self.config.image_features]\n\n        actions_hat",
         "            batch[OBS_IMAGES] = torch.stack([batch[key] for key in self.config.image_features], dim=-4)\n\n"
         "        actions_hat"),
        ("batch_size = batch[OBS_IMAGES][0].shape[0] if OBS_IMAGES in batch",
         "batch_size = batch[OBS_IMAGES].shape[0] if OBS_IMAGES in batch"),
        ("            for img in batch[OBS_IMAGES]:\n",
         "            for cam_index in range(batch[OBS_IMAGES].shape[-4]):\n"
         "                img = batch[OBS_IMAGES][:, cam_index]\n"),
    )),
    "cat-refactor": Edit(MODELING, (
        ("encoder_in_tokens = [self.encoder_latent_input_proj(latent_sample)]",
         "encoder_in_tokens = [self.encoder_latent_input_proj(latent_sample).unsqueeze(0)]"),
        ("encoder_in_pos_embed = list(self.encoder_1d_feature_pos_embed.weight.unsqueeze(1))",
         "encoder_in_pos_embed = [self.encoder_1d_feature_pos_embed.weight.unsqueeze(1)]"),
        ("encoder_in_tokens.append(self.encoder_robot_state_input_proj(batch[OBS_STATE]))",
         "encoder_in_tokens.append(self.encoder_robot_state_input_proj(batch[OBS_STATE]).unsqueeze(0))"),
        ("encoder_in_tokens.append(self.encoder_env_state_input_proj(batch[OBS_ENV_STATE]))",
         "encoder_in_tokens.append(self.encoder_env_state_input_proj(batch[OBS_ENV_STATE]).unsqueeze(0))"),
        ("encoder_in_tokens.extend(list(cam_features))", "encoder_in_tokens.append(cam_features)"),
        ("encoder_in_pos_embed.extend(list(cam_pos_embed))", "encoder_in_pos_embed.append(cam_pos_embed)"),
        ("encoder_in_tokens = torch.stack(encoder_in_tokens, axis=0)",
         "encoder_in_tokens = torch.cat(encoder_in_tokens, dim=0)"),
        ("encoder_in_pos_embed = torch.stack(encoder_in_pos_embed, axis=0)",
         "encoder_in_pos_embed = torch.cat(encoder_in_pos_embed, dim=0)"),
    )),
    "graph-break": Edit(MODELING, ((
        "        encoder_out = self.encoder(encoder_in_tokens, pos_embed=encoder_in_pos_embed)\n",
        "        encoder_out = self.encoder(encoder_in_tokens, pos_embed=encoder_in_pos_embed)\n"
        "        if torch.isnan(encoder_out).any():\n"
        "            raise ValueError(\"NaN in the encoder output\")\n",
    ),)),
    "compiled-drift": Edit(MODELING, ((
        "        encoder_out = self.encoder(encoder_in_tokens, pos_embed=encoder_in_pos_embed)\n",
        "        encoder_out = self.encoder(encoder_in_tokens, pos_embed=encoder_in_pos_embed)\n"
        "        if torch.compiler.is_compiling():\n"
        "            encoder_out = encoder_out * 1.001\n",
    ),)),
    "compiled-policy": Edit(MODELING, ((
        "        self.model = ACT(config)\n",
        "        self.model = torch.compile(ACT(config))\n",
    ),)),
    "checkpoint-half": Edit(MODELING, ((
        "    def get_optim_params(self) -> dict:\n",
        "    def _save_pretrained(self, save_directory):\n"
        "        from safetensors.torch import save_file\n\n"
        "        self.config._save_pretrained(save_directory)\n"
        "        state = {key: value.half() if value.is_floating_point() else value\n"
        "                 for key, value in self.state_dict().items()}\n"
        "        save_file({key: value.contiguous() for key, value in state.items()},\n"
        "                  str(save_directory / \"model.safetensors\"))\n\n"
        "    def get_optim_params(self) -> dict:\n",
    ),)),
    "optim-groups": Edit(MODELING, ((
        '                    if n.startswith("model.backbone") and p.requires_grad\n',
        '                    if n.startswith("model.vision_backbone") and p.requires_grad\n'),
    )),
}
"""Tag -> its edit of the `installed` package."""

TAGS = ("installed", *EDITS, "old-release")


LEROBOT_VENV = Path(__file__).resolve().parents[1] / ".venv-lerobot" / "bin" / "python"
"""Where `.ci/lerobot-venv` puts a Python with LeRobot installed (README's set-up for the LeRobot tests)."""


def lerobot_python() -> str | None:
    """A Python that imports LeRobot: `$ACT_EQUIV_LEROBOT_PYTHON`, else this one if it does, else the repository's
    `.venv-lerobot` if it exists, else None."""
    if os.environ.get(PYTHON_ENV):
        return os.environ[PYTHON_ENV]
    if importlib.util.find_spec("lerobot"):
        return sys.executable
    return str(LEROBOT_VENV) if LEROBOT_VENV.is_file() else None


def lerobot_source() -> Path:
    """The installed `lerobot` package directory: `$ACT_EQUIV_LEROBOT_SRC`, else where `lerobot_python()` imports it
    from. Raises LookupError saying why there is none (tests skip with it)."""
    if os.environ.get(SRC_ENV):
        package = Path(os.environ[SRC_ENV])
    else:
        python = lerobot_python()
        if python is None:
            raise LookupError(f"LeRobot's source is not available: set {SRC_ENV} to an installed `lerobot` package "
                              f"directory, or {PYTHON_ENV} to a Python that imports lerobot")
        code = "import lerobot, os; print(os.path.dirname(lerobot.__file__))"
        found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
        if found.returncode != 0:
            raise LookupError(f"{PYTHON_ENV}={python} cannot import lerobot: {found.stderr.strip()[-300:]}")
        package = Path(found.stdout.strip())
    if not (package / MODELING).is_file():
        raise LookupError(f"{package} is not a `lerobot` package directory (no {MODELING})")
    return package


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (no global git config needed) and return its stripped output."""
    env = {name: value for name, value in os.environ.items() if name not in GIT_LOCATING_ENV}
    env |= {"GIT_AUTHOR_DATE": DATE, "GIT_COMMITTER_DATE": DATE}
    done = subprocess.run(["git", *IDENTITY, "-C", str(repo), *args], capture_output=True, text=True, env=env,
                          check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def make_repo(dest: Path, lerobot_dir: Path) -> Path:
    """A repository at `dest` holding `lerobot_dir` (an installed `lerobot` package) and the tags of `TAGS`."""
    dest.mkdir(parents=True)
    git(dest, "init", "-q", "-b", MAIN)
    package = dest / "src" / "lerobot"
    shutil.copytree(lerobot_dir, package, ignore=IGNORE)
    _commit(dest, "installed", "LeRobot as installed")
    for tag, edit in EDITS.items():
        git(dest, "checkout", "-q", "--detach", "installed")
        edit.apply(package)
        _commit(dest, tag, f"{tag}: edit {edit.path}")
    git(dest, "checkout", "-q", "--detach", "stacked-images")
    _move_to_common_layout(dest)
    _commit(dest, "old-release", "move the package to the lerobot/common layout")
    git(dest, "checkout", "-q", MAIN)
    return dest


def worktree_with(repo: Path, dest: Path, tag: str) -> Path:
    """A clone of `repo` at `dest`, on `installed`, with `tag`'s edit applied to its working tree and not committed
    (`lerobot@WORKTREE` against `lerobot@HEAD` is then the edit under review)."""
    git(dest.parent, "clone", "-q", str(repo), str(dest))
    git(dest, "checkout", "-q", "--detach", "installed")
    EDITS[tag].apply(dest / "src" / "lerobot")
    return dest


def bare_copy(repo: Path, dest: Path) -> Path:
    """A bare clone of `repo` at `dest`, with its tags."""
    git(dest.parent, "clone", "-q", "--bare", str(repo), str(dest))
    return dest


def _commit(repo: Path, tag: str, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "tag", "-a", tag, "-m", tag)


def _move_to_common_layout(repo: Path) -> None:
    """`src/lerobot` -> `lerobot`, `lerobot/policies` -> `lerobot/common/policies`, imports rewritten to match."""
    git(repo, "mv", "src/lerobot", "lerobot")
    common = repo / "lerobot" / "common"
    common.mkdir()
    (common / "__init__.py").write_text("")
    git(repo, "mv", "lerobot/policies", "lerobot/common/policies")
    for file in (repo / "lerobot").rglob("*.py"):
        text = file.read_text()
        moved = re.sub(r"\blerobot\.policies\b", "lerobot.common.policies", text)
        if moved != text:
            file.write_text(moved)
