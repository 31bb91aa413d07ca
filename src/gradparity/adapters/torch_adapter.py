"""PyTorch: ``torch.nn.functional`` forward, autograd backward, ``torch.optim`` updates.

Layout: torch keeps a linear layer's weight as ``(out, in)`` (``F.linear``
computes ``x W^T + b``), the reference as ``(in, out)``. Weights are transposed
on the way in and gradients and updated weights on the way out; nothing else
is converted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradparity.adapters.base import (
    Adapter,
    Availability,
    LayerResult,
    LossResult,
    PrecisionError,
    TrainingSession,
)
from gradparity.adapters.torch_functions import (
    ACTIVATIONS,
    LAYERS,
    LOSSES,
    Options,
    layer_unsupported_reason,
    run_stack,
)
from gradparity.reference.sequence import running_entries
from gradparity.spec.case import Case
from gradparity.spec.data import Problem

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}

SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, Options, int], Any]] = {
    "constant": lambda optimizer, o, steps: None,
    "step": lambda optimizer, o, steps: torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=o["step_size"], gamma=o["gamma"]),
    "cosine": lambda optimizer, o, steps: torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(o["cosine_period"] or steps, 1), eta_min=o["cosine_min_lr"]),
}

# torch.optim state keys -> the reference's slot names
STATE_SLOTS = {
    "momentum_buffer": "momentum_buffer",
    "exp_avg": "first_moment",
    "exp_avg_sq": "second_moment",
    "max_exp_avg_sq": "max_second_moment",
    "square_avg": "square_avg",
    "grad_avg": "grad_avg",
    "sum": "sum_of_squares",
}

OPTIMIZERS: dict[str, Callable[[list[torch.Tensor], dict], torch.optim.Optimizer]] = {
    "sgd": lambda params, hp: torch.optim.SGD(
        params, lr=hp["lr"], momentum=hp["momentum"], dampening=hp["dampening"],
        nesterov=hp["nesterov"], weight_decay=hp["weight_decay"],
    ),
    "adam": lambda params, hp: torch.optim.Adam(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        weight_decay=hp["weight_decay"],
    ),
    "adamw": lambda params, hp: torch.optim.AdamW(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        weight_decay=hp["weight_decay"],
    ),
    "amsgrad": lambda params, hp: torch.optim.Adam(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], amsgrad=True,
    ),
    "rmsprop": lambda params, hp: torch.optim.RMSprop(
        params, lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"], momentum=hp["momentum"],
        centered=hp["centered"],
    ),
    "adagrad": lambda params, hp: torch.optim.Adagrad(
        params, lr=hp["lr"], eps=hp["eps"],
        initial_accumulator_value=hp["initial_accumulator_value"],
    ),
}


def unsupported_reason(case: Case) -> str | None:
    """Why torch.optim (or torch.nn.functional) cannot express ``case`` exactly, or None."""
    hp = case.hparams
    for spec in case.layer_specs:
        reason = layer_unsupported_reason(spec)
        if reason is not None:
            return reason
    if hp.get("eps_in_sqrt"):
        return f"torch.optim.{case.optimizer} adds eps outside the square root"
    if hp.get("max_of_bias_corrected"):
        return "torch.optim.Adam(amsgrad=True) keeps the maximum of the raw second moment"
    if hp["clip_norm"] and hp["clip_norm_eps"] != 1e-6:
        return "torch.nn.utils.clip_grad_norm_ always adds 1e-6 to the norm"
    if case.option("lr_in_momentum"):
        return "torch.optim.RMSprop multiplies its momentum buffer by the current lr"
    if (case.option("schedule") == "cosine" and case.option("cosine_past_period") == "hold"
            and case.steps - 1 > (case.option("cosine_period") or case.steps)):
        return "CosineAnnealingLR keeps following the cosine past T_max (it cannot hold)"
    return None


def _is_weight(name: str) -> bool:
    return name.startswith("W")


class _TorchSession:
    def __init__(self, case: Case, problem: Problem, device: str = "cpu") -> None:
        self._case = case
        self._dtype = _TORCH_DTYPES[case.dtype]
        self._device = torch.device(device)
        self._params: dict[str, torch.Tensor] = {}
        for name, value in problem.params.items():
            array = value.T if _is_weight(name) else value
            self._params[name] = torch.tensor(
                np.ascontiguousarray(array), dtype=self._dtype, device=self._device,
                requires_grad=True,
            )
        self._problem = problem
        self._running = {name: torch.tensor(np.array(value), device=self._device)
                         for name, value in problem.state.items()}
        self._options = case.all_options
        self._optimizer = OPTIMIZERS[case.optimizer](list(self._params.values()), case.hparams)
        self._scheduler = SCHEDULERS[self._options["schedule"]](
            self._optimizer, self._options, case.steps)
        self._steps_taken = 0

    def _check_dtype(self, what: str, tensor: torch.Tensor) -> None:
        expected = getattr(torch, self._case.dtype)
        if tensor.dtype != expected:
            raise PrecisionError(
                f"torch: {what} is {tensor.dtype}, case {self._case.id} is {self._case.dtype}"
            )

    def _to_reference(self, name: str, tensor: torch.Tensor) -> np.ndarray:
        self._check_dtype(name, tensor)
        array = tensor.detach().cpu().numpy()
        return np.array(array.T if _is_weight(name) else array)

    def _loss(self, evaluation: int) -> torch.Tensor:
        batch = self._problem.batch(evaluation)
        a = torch.tensor(batch.x, dtype=self._dtype, device=self._device)
        self._check_dtype("x", a)
        y = torch.tensor(batch.y, dtype=torch.int64 if batch.y.dtype.kind == "i" else self._dtype,
                         device=self._device)
        self._pre_activations = []
        if self._case.is_sequence:
            return self._sequence_loss(a if batch.x.dtype.kind == "f" else
                                       torch.tensor(batch.x, device=self._device), y)
        for layer, activation in enumerate(self._case.activations, start=1):
            z = F.linear(a, self._params[f"W{layer}"], self._params.get(f"b{layer}"))
            z.retain_grad()  # keeps dL/dz for backward_signals()
            self._pre_activations.append(z)
            a = ACTIVATIONS[activation](z, self._options)
            if batch.masks and layer < self._case.num_layers:
                # the NumPy-drawn keep mask (already scaled by 1 / (1 - p)): F.dropout
                # would draw its own from torch's generator
                a = a * torch.tensor(batch.masks[layer - 1], device=self._device)
        return LOSSES[self._case.loss](a, y, self._options)

    def _sequence_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The case's layers in ``torch.nn.functional``; the loss on every position's row
        (every axis but the last joined, as the reference's ``sequence.flat``)."""
        self._outputs: dict[str, torch.Tensor] = {}
        out, self._running = run_stack(self._case.layer_specs, self._params, x, True,
                                       self._running, self._outputs)
        rows = out.reshape(-1, out.shape[-1])
        return LOSSES[self._case.loss](rows, y.reshape(-1) if y.dtype == torch.int64
                                       else y.reshape(rows.shape), self._options)

    def loss_and_gradients(self, evaluation: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self._optimizer.zero_grad(set_to_none=True)
        loss = self._loss(evaluation)
        loss.backward()
        grads = {name: self._to_reference(name, p.grad) for name, p in self._params.items()}
        return self._to_reference("loss", loss), grads

    def step(self, completed_steps: int) -> dict[str, np.ndarray]:
        if completed_steps != self._steps_taken:
            raise RuntimeError(f"torch: step {completed_steps + 1} requested after "
                               f"{self._steps_taken} steps (the scheduler counts them)")
        hp, params = self._case.hparams, list(self._params.values())
        if hp["clip_value"]:
            torch.nn.utils.clip_grad_value_(params, hp["clip_value"])
        if hp["clip_norm"]:
            torch.nn.utils.clip_grad_norm_(params, hp["clip_norm"])
        self._optimizer.step()
        if self._scheduler is not None:
            self._scheduler.step()  # after optimizer.step(), as torch requires
        self._steps_taken += 1
        return {name: self._to_reference(name, p) for name, p in self._params.items()}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        arrays = {}
        for name, parameter in self._params.items():
            for key, value in self._optimizer.state.get(parameter, {}).items():
                if key in STATE_SLOTS and isinstance(value, torch.Tensor):
                    arrays[f"{STATE_SLOTS[key]}/{name}"] = self._to_reference(name, value)
        arrays.update(running_entries({name: self._to_reference(name, value)
                                       for name, value in self._running.items()}))
        return arrays

    def backward_signals(self) -> dict[str, np.ndarray]:
        if self._case.is_sequence:
            return {name: self._to_reference("delta", out.grad)
                    for name, out in self._outputs.items()}
        return {f"z{layer}": self._to_reference("delta", z.grad)
                for layer, z in enumerate(self._pre_activations, start=1)}

    def set_parameters(self, params) -> None:
        with torch.no_grad():
            for name, value in params.items():
                array = value.T if _is_weight(name) else value
                self._params[name].copy_(torch.tensor(np.ascontiguousarray(array),
                                                      device=self._device))


class TorchAdapter(Adapter):
    """PyTorch autograd + ``torch.optim``, on the CPU or on ``device``."""

    name = "torch"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def availability(self) -> Availability:
        if self.device == "cuda" and not torch.cuda.is_available():
            return Availability(False, torch.__version__,
                                f"torch {torch.__version__} sees no CUDA device "
                                "(torch.cuda.is_available() is False)")
        return Availability(True, torch.__version__, "")

    def unsupported_reason(self, case: Case) -> str | None:
        return unsupported_reason(case)

    def on_device(self, device: str) -> Adapter:
        return TorchAdapter(device)

    def start(self, case: Case, problem: Problem) -> TrainingSession:
        return _TorchSession(case, problem, self.device)

    def run_layer(self, spec, params, x, dy, training=True, state=None) -> LayerResult:
        kind = spec["type"]
        settings = {k: v for k, v in spec.items() if k != "type"}
        device, dtype = torch.device(self.device), _TORCH_DTYPES[str(np.asarray(dy).dtype)]
        tensors = {name: torch.tensor(np.asarray(value), dtype=dtype, device=device,
                                      requires_grad=True)
                   for name, value in params.items()}
        inputs = torch.tensor(np.asarray(x), device=device,
                              dtype=torch.int64 if np.asarray(x).dtype.kind == "i" else dtype,
                              requires_grad=np.asarray(x).dtype.kind == "f")
        buffers = {name: torch.tensor(np.array(value), dtype=dtype, device=device)
                   for name, value in (state or {}).items()}
        output, new_state = LAYERS[kind](tensors, inputs, settings, training, buffers)
        output.backward(torch.tensor(np.asarray(dy), dtype=dtype, device=device))

        def back(name: str, tensor: torch.Tensor | None) -> np.ndarray:
            if tensor is None:  # a parameter the output does not depend on
                return np.zeros_like(np.asarray(params[name]))
            return tensor.detach().cpu().numpy()

        dx = (inputs.grad.detach().cpu().numpy() if inputs.grad is not None
              else np.zeros(np.shape(x)))
        return LayerResult(self.name, output.detach().cpu().numpy(), dx,
                           {name: back(name, t.grad) for name, t in tensors.items()},
                           {name: v.detach().cpu().numpy() for name, v in new_state.items()})

    def layer_unsupported_reason(self, spec) -> str | None:
        return layer_unsupported_reason(spec)

    def run_loss(self, name, options, y_hat, y) -> LossResult:
        dtype = _TORCH_DTYPES[str(np.asarray(y_hat).dtype)]
        outputs = torch.tensor(np.asarray(y_hat), dtype=dtype, requires_grad=True)
        targets = torch.tensor(np.asarray(y), dtype=torch.int64 if np.asarray(y).dtype.kind
                               == "i" else dtype)
        value = LOSSES[name](outputs, targets, options)
        value.backward()
        return LossResult(self.name, float(value.detach()), outputs.grad.numpy())


ADAPTER = TorchAdapter()
