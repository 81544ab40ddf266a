"""Deployment forms: the target as a robot runs it, exported once and called at any batch size.

The export contract is the deployment one (how LeRobot's export pull requests wrap ACT): `DeploymentModule`, the
inner model's eval forward as a function of flat tensors returning the action chunk,

    forward(*inputs) -> actions (B, chunk_size, action_dim)
    inputs = [observation.state (B, state_dim)]            if the config has a robot state
           + [observation.environment_state (B, env_dim)]  if it has an environment state
           + [camera i (B, 3, H_i, W_i) for each camera, in config order]

with the batch dimension of every input and of the output dynamic. It builds LeRobot's batch dict from the flat
tensors and returns `model(batch)[0]`, so no action, padding mask or VAE input is needed (inference). On the
eager target it computes the same numbers as the dict call; the oracle checks that bitwise.

Forms (`act_equiv.forms.DEPLOYED`), each exported once per model structure and reused with each case's weights loaded:
- `exported`: `torch.export.export` with a dynamic batch dimension, run through `ExportedProgram.module()`;
- `onnx`: `torch.onnx.export` (the dynamo exporter or the TorchScript one), run by onnxruntime's CPU provider;
- `aoti`: an AOTInductor package of the exported program, loaded and run.
An export must serve every batch size: a call the export refuses at a size other than its example's, or an
output whose batch is not the input's, raises `ExportSpecialisedError`; so does an exporter that reports the
batch dimension specialised. Anything else an exporter raises becomes `ExportError` with the exporter's innermost
message; a runtime error at the example batch propagates as it is (the runner records either).
"""

from __future__ import annotations

import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from act_equiv import compat, forms
from act_equiv.config import OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, ACTConfig
from act_equiv.errors import ExportError, ExportSpecialisedError

__all__ = ["AotiForm", "DeployedForm", "DeploymentModule",
           "ExportedForm", "OnnxForm", "deploy", "deployment_inputs", "input_names"]

class DeploymentModule(nn.Module):
    """The inner model's eval forward as a function of flat tensors (see the module docstring)."""

    def __init__(self, config: ACTConfig, model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.model = model

    def forward(self, *inputs: Tensor) -> Tensor:
        flat = list(inputs)
        batch: dict[str, Any] = {}
        if self.config.state_dim is not None:
            batch[OBS_STATE] = flat.pop(0)
        if self.config.env_state_dim is not None:
            batch[OBS_ENV_STATE] = flat.pop(0)
        if self.config.camera_shapes:
            batch[OBS_IMAGES] = flat
        return self.model(batch)[0]


def input_names(config: ACTConfig) -> list[str]:
    """The flat inputs' names, in order (the ONNX graph's input names)."""
    names = [OBS_STATE] if config.state_dim is not None else []
    names += [OBS_ENV_STATE] if config.env_state_dim is not None else []
    return names + [f"{OBS_IMAGES}.{i}" for i in range(len(config.camera_shapes))]


def deployment_inputs(config: ACTConfig, batch: dict[str, Any]) -> tuple[Tensor, ...]:
    """A LeRobot batch dict as the flat inputs, in `input_names` order (actions and padding are not inputs)."""
    inputs = [batch[OBS_STATE]] if config.state_dim is not None else []
    inputs += [batch[OBS_ENV_STATE]] if config.env_state_dim is not None else []
    return (*inputs, *(batch[OBS_IMAGES] if config.camera_shapes else ()))


class DeployedForm(ABC):
    """One export of a `DeploymentModule`, callable at any batch size; `load` swaps in another model's weights."""

    name = ""

    def __init__(self, module: DeploymentModule, example: Sequence[Tensor], onnx_exporter: str = "dynamo") -> None:
        self.example_batch = example[0].shape[0]
        start = time.perf_counter()
        try:
            self._export(module.eval(), tuple(example))
        except Exception as error:
            if compat.is_export_specialisation_error(error):
                raise ExportSpecialisedError(
                    f"{self.name}: the exporter specialised the batch dimension to the example batch "
                    f"{self.example_batch}: {compat.exporter_message(error)}") from error
            raise ExportError(compat.exporter_message(error)) from error
        self.export_seconds = time.perf_counter() - start

    def __call__(self, inputs: Sequence[Tensor]) -> Tensor:
        size = inputs[0].shape[0]
        try:
            output = self._run(tuple(inputs))
        except Exception as error:
            if size == self.example_batch:
                raise
            raise ExportSpecialisedError(
                f"{self.name}: exported at batch {self.example_batch}, refused batch {size}: "
                f"{compat.exporter_message(error)}") from error
        if output.shape[:1] != (size,):
            raise ExportSpecialisedError(f"{self.name}: exported at batch {self.example_batch}, returned "
                                         f"{tuple(output.shape)} for batch {size}")
        return output

    @staticmethod
    def dynamic_shapes(example: Sequence[Tensor]) -> tuple[tuple[dict[int, Any], ...]]:
        """torch.export's spec for `forward(*inputs)`: dimension 0 of every input is one dynamic batch."""
        batch = compat.batch_dim()
        return (tuple({0: batch} for _ in example),)

    @abstractmethod
    def _export(self, module: DeploymentModule, example: tuple[Tensor, ...]) -> None: ...

    @abstractmethod
    def _run(self, inputs: tuple[Tensor, ...]) -> Tensor: ...

    @abstractmethod
    def load(self, module: DeploymentModule) -> bool:
        """Use `module`'s weights from now on; False where this export cannot take them (then export again)."""


class ExportedForm(DeployedForm):
    """`torch.export.export` with a dynamic batch, run through `ExportedProgram.module()` (same ATen kernels)."""

    name = "exported"

    def _export(self, module: DeploymentModule, example: tuple[Tensor, ...]) -> None:
        self.program = compat.export_program(module, example, self.dynamic_shapes(example))
        self.module = self.program.module()

    def _run(self, inputs: tuple[Tensor, ...]) -> Tensor:
        return self.module(*inputs)

    def load(self, module: DeploymentModule) -> bool:
        state = module.state_dict()
        if set(self.module.state_dict()) != set(state):
            return False
        self.module.load_state_dict(state, strict=True)
        return True


class OnnxForm(DeployedForm):
    """`torch.onnx.export`, run by onnxruntime on its CPU execution provider, one intra-op thread as pinned."""

    name = "onnx"

    def __init__(self, module: DeploymentModule, example: Sequence[Tensor], onnx_exporter: str = "dynamo") -> None:
        self.exporter = onnx_exporter
        super().__init__(module, example)

    def _export(self, module: DeploymentModule, example: tuple[Tensor, ...]) -> None:
        import onnx

        names = input_names(module.config)
        axes = {name: {0: "batch"} for name in [*names, "actions"]}
        self.proto = onnx.load_from_string(compat.onnx_export(module, example, self.exporter, names, ["actions"],
                                                              self.dynamic_shapes(example), axes))
        self._session(self.proto)
        if self.inputs != names:
            missing = [name for name in names if name not in self.inputs]
            raise ExportError(f"the ONNX graph's inputs {self.inputs} are not the deployment contract's {names} "
                              f"(missing {missing}): the exporter dropped an input the graph does not use")

    def _session(self, proto: Any) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]

    def _run(self, inputs: tuple[Tensor, ...]) -> Tensor:
        feeds = {name: tensor.detach().cpu().numpy() for name, tensor in zip(self.inputs, inputs, strict=True)}
        (actions,) = self.session.run(None, feeds)
        return torch.from_numpy(actions).to(inputs[0].device)

    def load(self, module: DeploymentModule) -> bool:
        """Replace every initializer by the state_dict entry of its name; False when one is not such an entry (an
        exporter-made constant, e.g. a transposed weight): only a new export then holds the new weights."""
        from onnx import numpy_helper

        state = module.state_dict()
        initializers = self.proto.graph.initializer
        if any(init.name not in state for init in initializers):
            return False
        for init in initializers:
            init.CopyFrom(numpy_helper.from_array(state[init.name].detach().cpu().numpy(), init.name))
        self._session(self.proto)
        return True


class AotiForm(DeployedForm):
    """An AOTInductor package of the exported program (`compat.aoti_package`), loaded and run."""

    name = "aoti"

    def _export(self, module: DeploymentModule, example: tuple[Tensor, ...]) -> None:
        program = compat.export_program(module, example, self.dynamic_shapes(example))
        self._directory = tempfile.TemporaryDirectory(prefix="act-equiv-aoti-")
        self.model = compat.aoti_package(program, str(Path(self._directory.name) / "model.pt2"))

    def _run(self, inputs: tuple[Tensor, ...]) -> Tensor:
        output = self.model(*inputs)
        return output[0] if isinstance(output, (list, tuple)) else output

    def load(self, module: DeploymentModule) -> bool:
        """Never: a loaded package's `load_constants` leaves the constants inductor derived from the weights at
        compile time (CPU weight packing) as they were. Measured on torch 2.13: with another case's weights loaded,
        the actions were those of the old weights (max abs difference 1.1), so each set of weights gets its own
        package."""
        return False


def deploy(form: str, module: DeploymentModule, example: Sequence[Tensor], onnx_exporter: str = "dynamo"
           ) -> DeployedForm:
    """Export `module` as deployment form `form` (`act_equiv.forms.FORMS`) at `example` (flat inputs; a batch >= 2,
    see `compat`)."""
    if form not in forms.DEPLOYED:
        raise ValueError(f"form={form!r} is invalid: one of {list(forms.DEPLOYED)}")
    return forms.load(form)(module, example, onnx_exporter)
