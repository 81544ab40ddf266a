"""The two ACT forms: every feature combination builds and runs, the legacy (list + stack) and concat forms agree
bitwise in eager on CPU (outputs and gradients), their state dicts match LeRobot's and each other's, `build` is
seeded and leaves the global RNG alone, and act_equiv's documented deviations from LeRobot hold."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from act_equiv import ACT, ACTConfig, LegacyACT, build
from act_equiv.models import ACTPolicy
from act_equiv.models.backbone import FrozenBatchNorm2d, ResNetBackbone

FORMS = (LegacyACT, ACT)
SEED = 1234


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


CAMERAS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "cam0": (),
    "cam1": ((3, 40, 56),),  # not a multiple of 32: a 2x2 feature map
    "cam2": ((3, 64, 96), (3, 32, 32)),  # different resolutions: 2x3 and 1x1 tokens
}


def _matrix() -> list[Any]:
    cases = []
    for use_vae, state, env, cams, training in itertools.product(
        (True, False), (True, False), (True, False), CAMERAS, (True, False)
    ):
        if not env and cams == "cam0":
            continue  # no camera and no environment state: an invalid config (tested in test_config)
        case_id = "-".join(
            [
                "vae" if use_vae else "novae",
                "state" if state else "nostate",
                "env" if env else "noenv",
                cams,
                "train" if training else "eval",
            ]
        )
        cases.append(pytest.param(use_vae, state, env, CAMERAS[cams], training, id=case_id))
    return cases


def _run(model: torch.nn.Module, batch: dict[str, Any], seed: int = SEED) -> Any:
    torch.manual_seed(seed)  # the VAE samples with randn_like and dropout draws masks: same stream for each form
    return model(batch)


def _assert_outputs_equal(out_a: Any, out_b: Any) -> None:
    actions_a, (mu_a, log_sigma_a) = out_a
    actions_b, (mu_b, log_sigma_b) = out_b
    assert torch.equal(actions_a, actions_b), (actions_a - actions_b).abs().max()
    assert (mu_a is None) == (mu_b is None)
    if mu_a is not None:
        assert torch.equal(mu_a, mu_b)
        assert torch.equal(log_sigma_a, log_sigma_b)


def _assert_grads_equal(policy_a: torch.nn.Module, policy_b: torch.nn.Module) -> None:
    grads_a = {name: p.grad for name, p in policy_a.named_parameters()}
    grads_b = {name: p.grad for name, p in policy_b.named_parameters()}
    assert grads_a.keys() == grads_b.keys()
    missing = sorted(name for name, grad in grads_a.items() if grad is None)
    assert not missing, f"parameters without a gradient: {missing}"
    unequal = sorted(name for name in grads_a if grads_b[name] is None or not torch.equal(grads_a[name], grads_b[name]))
    assert not unequal, f"gradients differ between forms: {unequal}"


def _state_dicts_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("use_vae", "state", "env", "camera_shapes", "training"), _matrix())
def test_forms_agree_bitwise(
    tiny_config: Callable[..., ACTConfig],
    make_batch: Callable[..., dict[str, Any]],
    use_vae: bool,
    state: bool,
    env: bool,
    camera_shapes: tuple[tuple[int, int, int], ...],
    training: bool,
) -> None:
    config = tiny_config(
        use_vae=use_vae,
        state_dim=5 if state else None,
        env_state_dim=3 if env else None,
        camera_shapes=camera_shapes,
        dropout=0.1,  # active in training: bitwise equality must survive identical reseeding
    )
    batch = make_batch(config, batch_size=3)
    models = [build(config, seed=7, form=form) for form in FORMS]
    for model in models:
        model.train(training)

    with torch.set_grad_enabled(training):
        outputs = [_run(model, batch) for model in models]
    actions, (mu, log_sigma_x2) = outputs[0]
    assert actions.shape == (3, config.chunk_size, config.action_dim)
    assert actions.dtype == torch.float32
    assert torch.isfinite(actions).all()
    if use_vae and training:
        assert mu.shape == log_sigma_x2.shape == (3, config.latent_dim)
    else:
        assert mu is None and log_sigma_x2 is None
    _assert_outputs_equal(*outputs)

    if training:
        policies = [ACTPolicy(config, model) for model in models]
        losses = []
        for policy in policies:
            policy.train()
            loss, parts = _run(policy, batch)
            assert ("kld_loss" in parts) == use_vae
            loss.backward()
            losses.append(loss)
        assert torch.equal(losses[0], losses[1])
        _assert_grads_equal(*policies)


def test_dropout_is_live_in_training(tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any]) -> None:
    """The bitwise comparisons above use dropout 0.1; prove it acts (another seed, other outputs)."""
    config = tiny_config(use_vae=False, dropout=0.1)
    batch = make_batch(config)
    model = build(config, seed=0).train()
    assert not torch.equal(_run(model, batch, seed=1)[0], _run(model, batch, seed=2)[0])
    assert torch.equal(_run(model, batch, seed=1)[0], _run(model, batch, seed=1)[0])
    model.eval()
    assert torch.equal(_run(model, batch, seed=1)[0], _run(model, batch, seed=2)[0])


def test_vae_sample_depends_on_seed(tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any]) -> None:
    config = tiny_config(use_vae=True, dropout=0.0)
    batch = make_batch(config)
    model = build(config, seed=0).train()
    out_1, out_2 = _run(model, batch, seed=1), _run(model, batch, seed=2)
    assert torch.equal(out_1[1][0], out_2[1][0])  # mu is deterministic
    assert not torch.equal(out_1[0], out_2[0])  # the sample is not


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("key", ["observation.state", "observation.environment_state", "observation.images", "action"])
def test_every_input_is_read(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], form: type, key: str
) -> None:
    """Non-vacuity: the equality tests compare models whose outputs really depend on each input."""
    config = tiny_config(camera_shapes=((3, 64, 64), (3, 32, 64)))
    model = build(config, seed=0, form=form).train()
    batch = make_batch(config, seed=0)
    other = make_batch(config, seed=1)
    changed = {**batch, key: other[key]}
    assert not torch.equal(_run(model, batch)[0], _run(model, changed)[0])


@pytest.mark.parametrize("camera", [0, 1])
def test_each_camera_is_read(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], camera: int
) -> None:
    config = tiny_config(camera_shapes=((3, 64, 64), (3, 32, 64)))
    batch = make_batch(config)
    images = list(batch["observation.images"])
    images[camera] = images[camera] + 1.0
    for form in FORMS:
        model = build(config, seed=0, form=form).eval()
        with torch.no_grad():
            assert not torch.equal(model(batch)[0], model({**batch, "observation.images": images})[0])


# -- state dicts ----------------------------------------------------------------------------------------

LEROBOT_KEYS = Path(__file__).parent / "data" / "lerobot_act_resnet18_state_dict.json"


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_state_dict_matches_lerobot(form: type) -> None:
    """Keys and shapes equal LeRobot's inner `ACT` (resnet18, VAE, state, env, 2 cameras, LeRobot defaults).

    The reference is `tests/data/lerobot_act_resnet18_state_dict.json`, produced once from LeRobot 0.4.4
    (whose ACT model code is byte-identical to 0.6.1) by `tests/data/make_lerobot_state_dict_keys.py`; it
    holds LeRobot's config, every state-dict key with its shape, the key count and the parameter count. The
    suite reads that file and does not need LeRobot installed.
    """
    data = json.loads(LEROBOT_KEYS.read_text())
    lerobot_config = data["config"]
    config = ACTConfig(
        vision_backbone=lerobot_config["vision_backbone"],
        use_vae=lerobot_config["use_vae"],
        state_dim=lerobot_config["state_dim"],
        env_state_dim=lerobot_config["env_state_dim"],
        camera_shapes=[tuple(shape) for shape in lerobot_config["camera_shapes"]],
        action_dim=lerobot_config["action_dim"],
        dim_model=lerobot_config["dim_model"],
        chunk_size=lerobot_config["chunk_size"],
        n_action_steps=lerobot_config["chunk_size"],
        latent_dim=lerobot_config["latent_dim"],
        n_encoder_layers=lerobot_config["n_encoder_layers"],
        n_decoder_layers=lerobot_config["n_decoder_layers"],
        n_vae_encoder_layers=lerobot_config["n_vae_encoder_layers"],
        dim_feedforward=lerobot_config["dim_feedforward"],
        n_heads=lerobot_config["n_heads"],
    )
    model = form(config)
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    theirs = data["state_dict"]
    assert sorted(set(theirs) - set(ours)) == [], "keys LeRobot has and act_equiv lacks"
    assert sorted(set(ours) - set(theirs)) == [], "keys act_equiv has and LeRobot lacks"
    assert {k: v for k, v in ours.items() if v != theirs[k]} == {}, "shapes differ"
    assert len(ours) == data["n_keys"]
    assert sum(p.numel() for p in model.parameters()) == data["n_parameters"]

    policy_keys = set(ACTPolicy(config, model).state_dict())
    assert policy_keys == {f"model.{key}" for key in theirs}


@pytest.mark.parametrize(
    ("source", "target"), [(LegacyACT, ACT), (ACT, LegacyACT)], ids=["legacy->concat", "concat->legacy"]
)
def test_state_dict_loads_strict_across_forms(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], source: type, target: type
) -> None:
    config = tiny_config(camera_shapes=((3, 32, 64), (3, 64, 32)))
    trained = build(config, seed=1, form=source)
    fresh = build(config, seed=2, form=target)
    batch = make_batch(config)
    trained.eval()
    fresh.eval()
    with torch.no_grad():
        assert not torch.equal(trained(batch)[0], fresh(batch)[0])
        result = fresh.load_state_dict(trained.state_dict(), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        assert torch.equal(trained(batch)[0], fresh(batch)[0])


def test_policy_state_dict_loads_strict_across_forms(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config()
    legacy = ACTPolicy(config, build(config, seed=1, form=LegacyACT))
    concat = ACTPolicy(config, build(config, seed=2, form=ACT))
    concat.load_state_dict(legacy.state_dict(), strict=True)
    assert _state_dicts_equal(legacy.state_dict(), concat.state_dict())


def test_frozen_batch_norm_ignores_num_batches_tracked() -> None:
    """A trainable-BatchNorm checkpoint carries num_batches_tracked; frozen batch norm drops it on load."""
    bn = FrozenBatchNorm2d(4)
    state = {**bn.state_dict(), "num_batches_tracked": torch.tensor(3)}
    bn.load_state_dict(state, strict=True)
    assert "num_batches_tracked" not in bn.state_dict()


# -- build ---------------------------------------------------------------------------------------------


def test_build_is_seeded(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config(camera_shapes=((3, 32, 32), (3, 64, 64)))
    reference = build(config, seed=3).state_dict()
    for form in FORMS:
        for _ in range(2):
            assert _state_dicts_equal(build(config, seed=3, form=form).state_dict(), reference)
    other = build(config, seed=4).state_dict()
    assert reference.keys() == other.keys()
    differing = {k for k in reference if not torch.equal(reference[k], other[k])}
    # Every randomly drawn tensor changes with the seed: weights, embeddings, frozen batch-norm statistics.
    for key in (
        "backbone.conv1.weight",
        "backbone.bn1.running_mean",
        "backbone.bn1.running_var",
        "backbone.layer1.0.bn1.weight",
        "encoder.layers.0.self_attn.in_proj_weight",
        "decoder.layers.0.linear1.weight",
        "encoder_1d_feature_pos_embed.weight",
        "decoder_pos_embed.weight",
        "vae_encoder_cls_embed.weight",
        "action_head.weight",
        "action_head.bias",
    ):
        assert key in differing, key
    # The fixed sinusoid table does not.
    assert "vae_encoder_pos_enc" not in differing


def test_build_leaves_global_rng_alone(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config()
    torch.manual_seed(99)
    expected = torch.rand(8)
    torch.manual_seed(99)
    state = torch.get_rng_state()
    build(config, seed=5)
    build(config, seed=6, form=LegacyACT)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(8), expected)


def test_build_ignores_global_rng(tiny_config: Callable[..., ACTConfig]) -> None:
    config = tiny_config()
    torch.manual_seed(1)
    a = build(config, seed=5).state_dict()
    torch.manual_seed(2)
    torch.rand(100)
    b = build(config, seed=5).state_dict()
    assert _state_dicts_equal(a, b)


# -- documented deviations, dtypes, batch sizes ------------------------------------------------------


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("cameras", [(), ((3, 32, 32),)], ids=["env-only", "env+camera"])
def test_no_state_feature_works(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], training: bool, cameras: tuple
) -> None:
    """LeRobot reads the zero latent's (and the VAE pad mask's) device from the state: a KeyError without one."""
    config = tiny_config(state_dim=None, camera_shapes=cameras, use_vae=True)
    batch = make_batch(config, with_action=training)
    assert "observation.state" not in batch
    outputs = []
    for form in FORMS:
        model = build(config, seed=0, form=form).train(training)
        with torch.set_grad_enabled(training):
            outputs.append(_run(model, batch))
        assert outputs[-1][0].shape == (2, config.chunk_size, config.action_dim)
    _assert_outputs_equal(*outputs)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("use_vae", [True, False], ids=["vae", "novae"])
def test_float64_without_autocast(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], training: bool, use_vae: bool
) -> None:
    """LeRobot hard-codes a float32 zero latent; act_equiv's follows the model's dtype."""
    config = tiny_config(use_vae=use_vae, camera_shapes=((3, 32, 64),), dropout=0.1)
    batch = make_batch(config, dtype=torch.float64)
    outputs, policies = [], []
    for form in FORMS:
        model = build(config, seed=0, form=form).double().train(training)
        outputs.append(_run(model, batch))
        actions, (mu, _) = outputs[-1]
        assert actions.dtype == torch.float64
        assert actions.shape == (2, config.chunk_size, config.action_dim)
        if mu is not None:
            assert mu.dtype == torch.float64
        if training:
            policy = ACTPolicy(config, model)
            loss, _ = _run(policy, batch)
            assert loss.dtype == torch.float64
            loss.backward()
            policies.append(policy)
    _assert_outputs_equal(*outputs)
    if training:
        _assert_grads_equal(*policies)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_batch_size_one(tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], training: bool) -> None:
    config = tiny_config(camera_shapes=((3, 32, 32), (3, 64, 32)), dropout=0.1)
    batch = make_batch(config, batch_size=1)
    outputs, policies = [], []
    for form in FORMS:
        model = build(config, seed=0, form=form).train(training)
        with torch.set_grad_enabled(training):
            outputs.append(_run(model, batch))
        assert outputs[-1][0].shape == (1, config.chunk_size, config.action_dim)
        if training:
            policy = ACTPolicy(config, model)
            _run(policy, batch)[0].backward()
            policies.append(policy)
    _assert_outputs_equal(*outputs)
    if training:
        _assert_grads_equal(*policies)


def test_batch_size_from_env_state_without_cameras(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any]
) -> None:
    config = tiny_config(camera_shapes=(), state_dim=None)
    batch = make_batch(config, batch_size=5, with_action=False)
    for form in FORMS:
        with torch.no_grad():
            assert build(config, form=form).eval()(batch)[0].shape == (5, config.chunk_size, config.action_dim)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_training_with_vae_needs_actions(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], form: type
) -> None:
    config = tiny_config(use_vae=True)
    model = build(config, form=form).train()
    with pytest.raises(KeyError, match="action"):
        model(make_batch(config, with_action=False))


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_eval_ignores_actions(
    tiny_config: Callable[..., ACTConfig], make_batch: Callable[..., Any], form: type
) -> None:
    """Outside training the latent is zeros even when the batch carries actions."""
    config = tiny_config(use_vae=True)
    model = build(config, form=form).eval()
    with torch.no_grad():
        with_action = model(make_batch(config))
        without = model(make_batch(config, with_action=False))
    assert with_action[1] == (None, None)
    assert torch.equal(with_action[0], without[0])


# -- backbone -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channels"), [("tiny_resnet", 64), ("resnet18", 512), ("resnet34", 512)])
def test_backbone_layout(name: str, channels: int) -> None:
    backbone = ResNetBackbone(name)
    assert backbone.out_channels == channels
    assert not hasattr(backbone, "avgpool") and not hasattr(backbone, "fc")
    n_blocks = {"tiny_resnet": [1, 1, 1, 1], "resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}[name]
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == n_blocks
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    assert not any("num_batches_tracked" in key for key in backbone.state_dict())


@pytest.mark.parametrize("name", ["tiny_resnet", "resnet18"])
def test_backbone_stride_and_frozen_norm(name: str) -> None:
    """layer4 has stride 32; frozen batch norm makes train and eval identical and takes no gradient."""
    backbone = ResNetBackbone(name)
    img = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        train_out = backbone.train()(img)["feature_map"]
        eval_out = backbone.eval()(img)["feature_map"]
    assert train_out.shape == (1, backbone.out_channels, 2, 3)
    assert torch.equal(train_out, eval_out)
    assert all(
        not isinstance(m, FrozenBatchNorm2d) or not list(m.parameters(recurse=False)) for m in backbone.modules()
    )
