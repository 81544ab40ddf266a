"""LeRobot's own ACT as a built-in target: `--target lerobot`.

The factory translates an `act_equiv.ACTConfig` into LeRobot's `ACTConfig` (features as LeRobot
`PolicyFeature`s, every shared field copied by name, `pretrained_backbone_weights=None`, so it runs offline)
and builds LeRobot's inner `lerobot.policies.act.modeling_act.ACT`, unchanged. LeRobot is imported only
when the target is resolved, so act_equiv works without it.

Mapping (not a skip): act_equiv's `tiny_resnet` backbone is not a torchvision model, so LeRobot cannot
build it. The model is built with `vision_backbone="resnet18"` and then its two backbone-sized submodules
are replaced: `backbone` by act_equiv's `ResNetBackbone("tiny_resnet")` (torchvision's module names,
FrozenBatchNorm2d, returns `{"feature_map": layer4}` like LeRobot's `IntermediateLayerGetter`) and
`encoder_img_feat_input_proj` by `Conv2d(64, dim_model, 1)`. Everything else, including LeRobot's forward
(latent, tokens, position embeddings, VAE, encoder/decoder), is LeRobot's code. Any other config is
expressed as is; `unsupported` only reports what would keep LeRobot from building it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from act_equiv.config import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, TINY_BACKBONE, ACTConfig
from act_equiv.errors import TargetError
from act_equiv.models.backbone import ResNetBackbone
from act_equiv.targets.target import Target

__all__ = ["INSTALL", "LEROBOT_FIELDS", "MAPPED_BACKBONE", "POLICIES", "build", "lerobot_config", "load", "mapping",
           "policy", "stacked_unsupported", "stacks_cameras"]

INSTALL = (
    "`--target lerobot` needs LeRobot: run `tox -e lerobot`, or in a Python 3.11 venv "
    "`pip install torch==2.14.1 torchvision==0.29.1` then `pip install --no-deps lerobot==0.4.4` and its "
    "import dependencies (the list is in tox.ini's [testenv:lerobot])"
)

LEROBOT_FIELDS: tuple[str, ...] = (
    "n_obs_steps", "chunk_size", "n_action_steps", "vision_backbone", "pretrained_backbone_weights",
    "replace_final_stride_with_dilation", "pre_norm", "dim_model", "n_heads", "dim_feedforward",
    "feedforward_activation", "n_encoder_layers", "n_decoder_layers", "use_vae", "latent_dim",
    "n_vae_encoder_layers", "temporal_ensemble_coeff", "dropout", "kl_weight", "optimizer_lr",
    "optimizer_weight_decay", "optimizer_lr_backbone",
)
"""act_equiv's ACTConfig fields that LeRobot's ACTConfig has under the same name."""

MAPPED_BACKBONE = "resnet18"
"""What LeRobot is told to build for `tiny_resnet` before the backbone is swapped."""


def mapping(config: ACTConfig) -> str | None:
    """How this config is mapped onto LeRobot (for reports), or None when LeRobot builds it as is."""
    if config.camera_shapes and config.vision_backbone == TINY_BACKBONE:
        return (f"vision_backbone={TINY_BACKBONE!r} is not a torchvision model: LeRobot builds "
                f"{MAPPED_BACKBONE!r}, then `backbone` is act_equiv's ResNetBackbone({TINY_BACKBONE!r}) and "
                f"`encoder_img_feat_input_proj` Conv2d(64, {config.dim_model}, 1); LeRobot's forward is untouched")
    return None


POLICIES = "lerobot.policies"
"""Where LeRobot's policies live since mid-2025; before, `lerobot.common.policies` (`act_equiv.targets.revision`)."""


def lerobot_config(config: ACTConfig, policies: str = POLICIES) -> Any:
    """LeRobot's `ACTConfig` for `config` (features keyed as LeRobot's datasets name them)."""
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature

    LeRobotACTConfig = importlib.import_module(f"{policies}.act.configuration_act").ACTConfig  # noqa: N806

    inputs: dict[str, Any] = {}
    if config.state_dim is not None:
        inputs[OBS_STATE] = PolicyFeature(type=FeatureType.STATE, shape=(config.state_dim,))
    if config.env_state_dim is not None:
        inputs[OBS_ENV_STATE] = PolicyFeature(type=FeatureType.ENV, shape=(config.env_state_dim,))
    for key, feature in config.image_features.items():
        inputs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=tuple(feature.shape))
    fields = {name: getattr(config, name) for name in LEROBOT_FIELDS}
    if config.vision_backbone == TINY_BACKBONE:
        fields["vision_backbone"] = MAPPED_BACKBONE
    return LeRobotACTConfig(
        input_features=inputs,
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(config.action_dim,))},
        device="cpu",  # the policy-level setting; the runner moves the inner model itself
        normalization_mapping=dict.fromkeys(("VISUAL", "STATE", "ACTION"), NormalizationMode.IDENTITY),
        **fields,
    )


def build(config: ACTConfig, policies: str = POLICIES) -> nn.Module:
    """LeRobot's inner ACT for `config` (the tiny backbone swapped in when asked for, see `mapping`)."""
    with _replaced_backbone_on_meta(config):
        return _mapped(_modeling(policies).ACT(lerobot_config(config, policies)), config)


@contextlib.contextmanager
def _replaced_backbone_on_meta(config: ACTConfig) -> Iterator[None]:
    """While LeRobot builds the torchvision backbone that `mapping` replaces at once, hand it one built on the meta
    device (no memory, no initialisation) and kept for the next build with the same arguments: nothing ever reads it
    (`_mapped` replaces it before the model runs), and building it, even on meta, took most of a policy's build
    (measured: 0.2 s of each 0.24 s build, every case and side, before the meta device). LeRobot's ACT looks its
    backbone up as `getattr(torchvision.models, name)` at construction."""
    if mapping(config) is None:
        yield
        return
    import torchvision

    original = getattr(torchvision.models, MAPPED_BACKBONE)

    def on_meta(*args: Any, **kwargs: Any) -> nn.Module:
        key = repr((args, kwargs))
        if key not in _META_BACKBONES:
            with torch.device("meta"):
                _META_BACKBONES[key] = original(*args, **kwargs)
        return _META_BACKBONES[key]

    setattr(torchvision.models, MAPPED_BACKBONE, on_meta)
    try:
        yield
    finally:
        setattr(torchvision.models, MAPPED_BACKBONE, original)


_META_BACKBONES: dict[str, nn.Module] = {}
"""The meta-device backbones `_replaced_backbone_on_meta` handed out, by their arguments."""


def _mapped(model: nn.Module, config: ACTConfig) -> nn.Module:
    """`model` (LeRobot's inner ACT) with act_equiv's tiny backbone and its input projection, where `mapping` says."""
    if mapping(config) is not None:
        backbone = ResNetBackbone(TINY_BACKBONE)
        model.backbone = backbone
        model.encoder_img_feat_input_proj = nn.Conv2d(backbone.out_channels, config.dim_model, kernel_size=1)
    return model


def policy(config: ACTConfig, model: nn.Module, policies: str = POLICIES) -> nn.Module:
    """LeRobot's own `ACTPolicy`, as its constructor builds it, holding `model`'s weights (the inner ACT under
    test): loaded into the policy's own inner ACT, strictly, so that whatever the constructor wraps it in (a
    torch.compile) stays and shows in the policy's checkpoint. Releases that normalise inside the policy (before
    the processor pipelines of 2025-09) are told every feature's normalisation mode is IDENTITY (`lerobot_config`),
    so both sides of a comparison see the same numbers, in float32 and float64 alike (statistics of mean 0 and std
    1 would not be exact in float64: LeRobot adds 1e-8 to the std)."""
    modeling = _modeling(policies)
    with _replaced_backbone_on_meta(config):
        lerobot_policy = modeling.ACTPolicy(lerobot_config(config, policies))
    inner = _mapped(next(m for m in lerobot_policy.modules() if isinstance(m, modeling.ACT)), config)
    parameter = next(model.parameters())
    lerobot_policy.to(parameter.device, parameter.dtype)
    inner.load_state_dict(model.state_dict(), strict=True)
    return lerobot_policy


def stacks_cameras(modeling: Any) -> bool:
    """Whether this LeRobot's inner ACT takes its cameras as one stacked (B, n_cameras, C, H, W) tensor, as before
    2025-03 (its forward loops over `shape[-4]`), rather than a list of per-camera tensors."""
    return "shape[-4]" in inspect.getsource(modeling.ACT.forward)


def stacked_unsupported(config: ACTConfig) -> str | None:
    """Why a LeRobot that stacks its cameras cannot run `config`: cameras of different shapes do not stack."""
    if len(set(config.camera_shapes)) > 1:
        return (f"this LeRobot stacks its cameras into one tensor (its contract before 2025-03), and cameras of "
                f"different shapes {sorted(set(config.camera_shapes))} do not stack")
    return None


def _stack_cameras(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook: act_equiv's batches carry the cameras as a list; a stacking LeRobot reads one tensor."""
    batch = args[0]
    if isinstance(batch.get(OBS_IMAGES), list):
        return ({**batch, OBS_IMAGES: torch.stack(batch[OBS_IMAGES], dim=-4)}, *args[1:])
    return None


def _stacking(factory: Any) -> Any:
    """`factory` whose models take act_equiv's list of cameras and hand the stacking LeRobot one tensor (a forward
    pre-hook, so the state_dict keys stay LeRobot's)."""

    def build_stacking(config: ACTConfig) -> nn.Module:
        model = factory(config)
        model.register_forward_pre_hook(_stack_cameras)
        return model

    return build_stacking


def _modeling(policies: str) -> Any:
    return importlib.import_module(f"{policies}.act.modeling_act")


def load(spec: str = "lerobot", policies: str = POLICIES, about: dict[str, Any] | None = None) -> Target:
    """The `lerobot` target (`act_equiv.targets.BUILTIN`) from the LeRobot on `sys.path` (`policies` names where its
    policies live); a usage error naming the install steps without LeRobot."""
    try:
        modeling = _modeling(policies)
    except ImportError as error:
        raise TargetError(f"{INSTALL} ({type(error).__name__}: {error})") from error
    import lerobot

    # act_equiv's ACTConfig is stricter than LeRobot's (it rejects glu, dilation on BasicBlock ResNets, pretrained
    # weights), so every config it accepts is expressible, tiny_resnet via `mapping`; only a LeRobot that stacks its
    # cameras cannot take cameras of different shapes.
    factory: Any = functools.partial(build, policies=policies)
    stacked = stacks_cameras(modeling)
    return Target(spec, _stacking(factory) if stacked else factory,
                  unsupported=stacked_unsupported if stacked else (lambda config: None),
                  policy=functools.partial(policy, policies=policies),
                  about={"lerobot": getattr(lerobot, "__version__", "unknown"), "modeling": modeling.__file__,
                         "cameras": "stacked" if stacked else "list", **(about or {})})
