"""Sides in worker processes: an `InProcessSide` behind an execnet channel, on this interpreter or another one.

Two sides cannot share one interpreter when both are the package `lerobot` (two revisions) or when a side needs
another Python (another torch, a released LeRobot in its own venv). Such a side runs in a worker: execnet (the
engine pytest-xdist runs on) starts `python` and bootstraps itself there, so the worker needs nothing installed
but torch and the side's own dependencies; act_equiv's source (and a revision's materialised package) is put first
on the worker's `sys.path`. The worker runs the same `act_equiv.run.side.InProcessSide` as an in-process side;
requests and replies are plain dicts, pickled with each tensor's storage as raw bytes (`_pack`). The reference
weights cross once per structure and weight seed, batches and outputs once per case.

Failures never hang or crash the run: a worker that gives no reply within the timeout is killed, one that dies is
noticed, and either is recorded as `WorkerError` (a finding); the next request starts a fresh worker. A worker
that cannot import its side at all is a usage error.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from act_equiv.errors import RemoteError, WorkerError
from act_equiv.settings import WORKER_STARTUP, WORKER_TIMEOUT, Settings

__all__ = ["WorkerSide", "serve"]

_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
"""The directory holding the `act_equiv` package, put first on a worker's `sys.path`."""


# -- the main process's end ---------------------------------------------------------------------------------------
class WorkerSide:
    """A side in a worker process (an `act_equiv.run.side.Side`). `python` is the worker's interpreter; `paths` go
    first on its `sys.path`; `spec` is resolved there (`open` keywords go to `act_equiv.targets.resolve_in_worker`)."""

    in_worker = True

    def __init__(self, spec: str, settings: Settings, python: str | None = None, paths: tuple[str, ...] = (),
                 open_keywords: dict[str, Any] | None = None, label: str | None = None,
                 timeout: float = WORKER_TIMEOUT, setting: str = "target", env: dict[str, str] | None = None) -> None:
        self._spec, self.settings, self.paths, self.timeout = spec, settings, paths, timeout
        self.env = {name: value for name, value in (env or {}).items() if name not in os.environ}
        """Environment variables the worker sets before it imports anything, where this process has not set them."""
        self.python = python or sys.executable
        self.label = label or spec
        self.setting = setting
        self._open = {"spec": spec, "settings": dataclasses.asdict(settings), **(open_keywords or {})}
        self._group: Any = None
        self._channel: Any = None
        self._about: dict[str, Any] = {}
        self._built: Any = None
        """What the worker holds: (case structure, weight seed, role) of its last build or load."""
        self._state: Any = None
        """The state_dict of the worker's last build (kept here, so it crosses once per structure and seed)."""
        if shutil.which(self.python) is None:
            raise _usage(f"{setting}_python={self.python!r}: no such Python interpreter", f"{setting}_python")
        self._start()

    @property
    def spec(self) -> str:
        return self.label

    @property
    def policy_name(self) -> str:
        return self._about["policy"]

    def environment(self) -> dict[str, Any]:
        about = {key: value for key, value in self._about.items() if key not in ("missing_forms", "spec")}
        return {"spec": self.label, "process": f"worker ({self.python})", **about}  # the spec as given: lerobot@REV

    def unsupported(self, config: Any) -> str | None:
        return self._request("unsupported", config=config.to_dict())

    def build(self, case: Any) -> dict[str, Any]:
        key = (case.structure_key(), case.weights, "build")
        if self._built != key:
            self._built, self._state = None, self._request("build", case=case.to_dict())
            self._built = key
        return self._state

    def load(self, case: Any, state: dict[str, Any]) -> dict[str, list[str]] | None:
        key = (case.structure_key(), case.weights, "load")
        reuse = self._built == key
        layout = self._request("load", case=case.to_dict(), state=None if reuse else state, reuse=reuse)
        self._built = key if layout is None else None
        return layout

    def call(self, case: Any, batch: dict[str, Any]) -> dict[str, Any]:
        return self._request("call", case=case.to_dict(), batch=batch)

    def fresh(self, case: Any, batch: dict[str, Any]) -> dict[str, Any]:
        return self._request("fresh", case=case.to_dict(), batch=batch)

    def call64(self, case: Any, batches: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        return self._request("call64", case=case.to_dict(), batches=batches)

    def policy(self, case: Any, float64: bool = False, rollout_only: bool = False) -> dict[str, Any]:
        return self._request("policy", case=case.to_dict(), float64=float64, rollout_only=rollout_only)

    def trajectory(self, case: Any, trained: str = "eager", float64: str | None = None,
                   dropout: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        return tuple(self._request("trajectory", case=case.to_dict(), trained=trained, float64=float64,
                                   dropout=dropout))

    def policy_state(self, case: Any) -> dict[str, list[int]]:
        return self._request("policy_state", case=case.to_dict())

    def saves_checkpoints(self, case: Any) -> bool:
        return self._request("saves_checkpoints", case=case.to_dict())

    def save_checkpoint(self, case: Any, directory: str) -> None:
        self._request("save_checkpoint", case=case.to_dict(), directory=directory)

    def load_checkpoint(self, case: Any, directory: str) -> str | None:
        return self._request("load_checkpoint", case=case.to_dict(), directory=directory)

    def forms(self, case: Any) -> Any:
        """The loaded model's forms, compiled and exported in the worker (`InProcessSide.forms`)."""
        from act_equiv.run.records import FormsRecord

        return FormsRecord.from_dict(self._request("forms", case=case.to_dict()))

    def explain(self, case: Any) -> dict[str, Any] | None:
        return self._request("explain", case=case.to_dict())

    def missing_forms(self) -> dict[str, str]:
        """What the worker's interpreter lacks for the settings' forms (asked when it opened)."""
        return self._about["missing_forms"]

    def close(self) -> None:
        if self._group is not None:
            self._group.terminate(timeout=1.0)
            self._group = self._channel = None

    # -- transport ---------------------------------------------------------------------------------------------
    def _start(self) -> None:
        import execnet

        self._group = execnet.Group()
        try:
            gateway = self._group.makegateway(f"popen//python={self.python}")
            self._channel = gateway.remote_exec(_BOOTSTRAP)
            self._channel.send({"paths": [*self.paths, _SOURCE_ROOT], "env": self.env})
            reply = self._channel.receive(self._startup)
        except (execnet.TimeoutError, EOFError, OSError, execnet.RemoteError) as error:
            self.close()
            raise _usage(f"{self.setting}={self.label!r}: the worker on {self.python} did not start "
                         f"({type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error) else ''})",
                         self.setting, f"{self.setting}_python") from error
        if not reply["ok"]:
            self.close()
            raise _usage(f"{self.setting}={self.label!r}: the worker on {self.python} cannot load act_equiv "
                         f"({reply['error']['type']}: {reply['error']['message']})", f"{self.setting}_python")
        self._built = None
        try:
            opened = self._send("open", self._open, self._startup)
        except WorkerError as error:
            if self._about:  # a fresh worker after one that failed: a finding of the case that asked for it
                raise
            raise _usage(f"{self.setting}={self.label!r}: the worker on {self.python} did not open its side "
                         f"({error})", self.setting, f"{self.setting}_python") from error
        if not opened["ok"]:
            self.close()
            error = opened["error"]
            raise _usage(f"{self.setting}={self.label!r} does not load in the worker on {self.python}: "
                         f"{error['type']}: {error['message']}", self.setting, f"{self.setting}_python")
        self._about = _unpack(opened["value"])

    @property
    def _startup(self) -> float:
        """Seconds the worker may take to start and open its side (`WORKER_STARTUP`)."""
        return max(self.timeout, WORKER_STARTUP)

    def _send(self, op: str, arguments: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        import execnet

        timeout = self.timeout if timeout is None else timeout
        try:
            self._channel.send({"op": op, "arguments": _pack(arguments)})
            return self._channel.receive(timeout)
        except execnet.TimeoutError as error:
            self.close()
            raise WorkerError(f"the worker of {self.label} gave no reply to {op!r} within {timeout:g} s "
                               "and was killed") from error
        except (EOFError, OSError, execnet.RemoteError) as error:
            self.close()
            raise WorkerError(f"the worker of {self.label} died during {op!r} "
                               f"({type(error).__name__}: {str(error).strip()[-300:]})") from error

    def _request(self, op: str, **arguments: Any) -> Any:
        if self._channel is None:
            self._start()
        reply = self._send(op, arguments)
        if not reply["ok"]:
            raise RemoteError(reply["error"])
        return _unpack(reply["value"])


def _usage(message: str, *settings: str) -> Exception:
    from act_equiv.errors import UsageError

    return UsageError(message, *settings)


_BOOTSTRAP = """
import os, sys
try:
    start = channel.receive()
    os.environ.update(start["env"])
    sys.path[:0] = start["paths"]
    from act_equiv.run.worker import serve
except BaseException as error:
    channel.send({"ok": False, "error": {"type": type(error).__name__, "message": str(error)}})
else:
    channel.send({"ok": True})
    serve(channel)
"""
"""What execnet runs in the worker: set its environment, put the paths first, import act_equiv from there, serve
requests."""


def _pack(value: Any) -> bytes:
    """`value` as bytes: pickled, with each plain tensor's storage written once as raw bytes (`_Pickler`)."""
    buffer = io.BytesIO()
    _Pickler(buffer).dump(value)
    return buffer.getvalue()


def _unpack(data: bytes) -> Any:
    """`_pack`'s bytes back. Both ends are act_equiv's own processes, and the worker runs its side's code anyway, so
    an unpickler restricted to known types would guard nothing."""
    return _Unpickler(io.BytesIO(data)).load()


class _Pickler(pickle.Pickler):
    """Pickles a plain tensor (or `nn.Parameter`) as its dtype, view (offset, size, stride), `requires_grad` and
    storage, each storage once, as raw bytes: what `torch.save` keeps (views alias one storage, strides stay), at a
    fraction of its cost for the hundreds of small tensors a case sends (a zip record per storage). Other tensors
    (subclasses, sparse, quantized) go through torch's own pickling."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._storages: dict[tuple[int, int, str], int] = {}

    def persistent_id(self, obj: Any) -> Any:
        import torch

        if type(obj) not in (torch.Tensor, torch.nn.Parameter) or obj.layout is not torch.strided \
                or obj.is_quantized or obj.device.type not in ("cpu", "cuda"):
            return None
        storage = obj.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes(), str(obj.device))
        index = self._storages.get(key)
        raw = None
        if index is None:
            index = self._storages[key] = len(self._storages)
            raw = torch.empty(0, dtype=torch.uint8, device=obj.device).set_(storage).cpu().numpy().tobytes()
        return ("tensor", index, raw, str(obj.device), str(obj.dtype).removeprefix("torch."), obj.storage_offset(),
                tuple(obj.shape), obj.stride(), obj.requires_grad, type(obj) is torch.nn.Parameter)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self._storages: list[Any] = []

    def persistent_load(self, pid: Any) -> Any:
        import torch

        _, index, raw, device, dtype, offset, shape, stride, requires_grad, parameter = pid
        if raw is not None:
            data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            self._storages.append(data.to(device).untyped_storage())
        tensor = torch.empty(0, dtype=getattr(torch, dtype), device=device).set_(self._storages[index], offset, shape,
                                                                                  stride)
        if parameter:
            return torch.nn.Parameter(tensor, requires_grad=requires_grad)
        return tensor.requires_grad_(requires_grad)


# -- the worker's end ---------------------------------------------------------------------------------------------
def serve(channel: Any) -> None:
    """Answer requests until the channel closes. Each reply is {"ok": True, "value": bytes} or {"ok": False,
    "error": {type, kind, message, traceback}}: what a side raises is reported, never fatal to the worker."""
    server = _Server()
    for request in channel:
        try:
            value = server.handle(request["op"], _unpack(request["arguments"]))
        except BaseException as error:
            from act_equiv.run.records import error_kind

            frames = traceback.format_exception(type(error), error, error.__traceback__)
            channel.send({"ok": False, "error": {
                "type": type(error).__name__, "kind": error_kind(error),
                "message": str(error).strip().splitlines()[0] if str(error) else "",
                "traceback": [line.rstrip() for line in frames[-6:]]}})
        else:
            channel.send({"ok": True, "value": _pack(value)})


class _Server:
    def __init__(self) -> None:
        self.side: Any = None

    def handle(self, op: str, arguments: dict[str, Any]) -> Any:
        from act_equiv.case import Case
        from act_equiv.config import ACTConfig
        from act_equiv.run import numerics

        if op == "open":
            return self._open(**arguments)
        if op == "unsupported":
            return self.side.unsupported(ACTConfig.from_dict(arguments["config"]))
        case = Case.from_dict(arguments["case"])
        with numerics.pinned(self.side.settings.device):
            if op == "build":
                return self.side.build(case)
            if op == "load":
                return None if arguments["reuse"] else self.side.load(case, arguments["state"])
            if op == "call":
                return self.side.call(case, arguments["batch"])
            if op == "fresh":
                return self.side.fresh(case, arguments["batch"])
            if op == "call64":
                return self.side.call64(case, arguments["batches"])
            if op == "policy":
                return self.side.policy(case, arguments["float64"], arguments["rollout_only"])
            if op == "trajectory":
                return self.side.trajectory(case, arguments["trained"], arguments["float64"], arguments["dropout"])
            if op == "policy_state":
                return self.side.policy_state(case)
            if op == "saves_checkpoints":
                return self.side.saves_checkpoints(case)
            if op == "save_checkpoint":
                return self.side.save_checkpoint(case, arguments["directory"])
            if op == "load_checkpoint":
                return self.side.load_checkpoint(case, arguments["directory"])
            if op == "forms":
                return self.side.forms(case).to_dict()
            if op == "explain":
                return self.side.explain(case)
        raise ValueError(f"unknown request {op!r}")

    def _open(self, spec: str, settings: dict[str, Any], **keywords: Any) -> dict[str, Any]:
        from act_equiv.run.side import InProcessSide
        from act_equiv.targets import resolve_in_worker

        self.side = InProcessSide(resolve_in_worker(spec, **keywords), Settings(**settings))
        return {**self.side.environment(), "process": f"worker pid {os.getpid()}",
                "missing_forms": self.side.missing_forms()}
