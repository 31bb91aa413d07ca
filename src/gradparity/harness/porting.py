"""Library-defaults mode: what a user porting a model between PyTorch and JAX gets.

A *named* case ("an MLP with gelu and RMSprop, lr 0.01") is run twice: in
PyTorch with torch's own defaults and in JAX with optax's / jax.nn's own
defaults. :data:`LIBRARY_DEFAULTS` is the one table of those defaults; each
entry names the catalogue convention (:mod:`gradparity.adapters.conventions`) it
belongs to and says how it rewrites the case for each library.

For every pair that disagrees, the difference is *explained* only if the
reference, configured once with torch's defaults and once with optax's,
reproduces both framework results (each within its derived tolerance); the
explanation is then the list of conventions whose settings differ. A
disagreement with no differing convention, or one the reference does not
reproduce, is reported as **unexplained**.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gradparity.adapters import get_adapter, one_torch_thread
from gradparity.harness.runner import compare_pair
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem


def _with_hp(case: Case, **values) -> Case:
    return replace(case, hyperparameters={**case.hparams, **values})


def _with_options(case: Case, **values) -> Case:
    return replace(case, options={**dict(case.options), **values})


def _layers_set(case: Case, kind: str, **settings) -> Case:
    """A sequence case with ``settings`` on every layer of type ``kind`` (residual blocks'
    inner layers too); the layers are then spelled out (no architecture name)."""
    def rewrite(specs: list[dict]) -> list[dict]:
        return [{**spec, "layers": rewrite(spec["layers"])} if spec["type"] == "residual"
                else {**spec, **settings} if spec["type"] == kind else spec for spec in specs]

    return replace(case, layers=rewrite(case.layer_specs), input_shape=case.input_shape,
                   architecture=None)


def _norms_set(case: Case, **settings) -> Case:
    """``settings`` on every LayerNorm and BatchNorm of a sequence case that has them."""
    for kind in ("layer_norm", "batch_norm"):
        if _has_layer(kind)(case):
            case = _layers_set(case, kind, **settings)
    return case


def _has_layer(kind: str) -> Callable[[Case], bool]:
    def check(case: Case) -> bool:
        def inside(specs) -> bool:
            return any(spec["type"] == kind or (spec["type"] == "residual"
                                                and inside(spec["layers"])) for spec in specs)
        return case.is_sequence and inside(case.layer_specs)
    return check


def _renamed_layers(case: Case, old: str, new: str) -> Case:
    def rewrite(specs: list[dict]) -> list[dict]:
        return [{**spec, "layers": rewrite(spec["layers"])} if spec["type"] == "residual"
                else {**spec, "type": new} if spec["type"] == old else spec for spec in specs]

    return replace(case, layers=rewrite(case.layer_specs), input_shape=case.input_shape,
                   architecture=None)


def _gelu_tanh(case: Case) -> Case:
    if case.is_sequence:
        return _renamed_layers(case, "gelu", "gelu_tanh")
    hidden = tuple("gelu_tanh" if name == "gelu" else name for name in case.hidden_activation)
    output = "gelu_tanh" if case.output_activation == "gelu" else case.output_activation
    return replace(case, hidden_activation=hidden, output_activation=output)


@dataclass(frozen=True)
class LibraryDefault:
    """One default that differs between the libraries, as a rewrite of a named case.

    ``applies(case)`` says whether the named case touches it; ``torch`` and
    ``jax`` return the case as each library's defaults make it.
    """

    convention: str
    applies: Callable[[Case], bool]
    torch: Callable[[Case], Case]
    jax: Callable[[Case], Case]


def _same(case: Case) -> Case:
    return case


LIBRARY_DEFAULTS: tuple[LibraryDefault, ...] = (
    LibraryDefault("gelu_default_form",
                   lambda c: "gelu" in c.activations or _has_layer("gelu")(c), _same,
                   _gelu_tanh),
    LibraryDefault("batch_norm_momentum", _has_layer("batch_norm"),
                   lambda c: _layers_set(c, "batch_norm", momentum=0.1),
                   lambda c: _layers_set(c, "batch_norm", momentum=0.01)),  # Flax's 0.99
    LibraryDefault("batch_norm_running_variance", _has_layer("batch_norm"),
                   lambda c: _layers_set(c, "batch_norm", running_var_unbiased=True),
                   lambda c: _layers_set(c, "batch_norm", running_var_unbiased=False)),
    LibraryDefault("layer_norm_eps", _has_layer("layer_norm"),
                   lambda c: _layers_set(c, "layer_norm", eps=1e-5),
                   lambda c: _layers_set(c, "layer_norm", eps=1e-6)),
    LibraryDefault("norm_variance_form",
                   lambda c: _has_layer("batch_norm")(c) or _has_layer("layer_norm")(c),
                   lambda c: _norms_set(c, variance="centered"),
                   lambda c: _norms_set(c, variance="mean_of_squares")),  # use_fast_variance
    LibraryDefault("adamw_default_weight_decay", lambda c: c.optimizer == "adamw",
                   lambda c: _with_hp(c, weight_decay=1e-2),
                   lambda c: _with_hp(c, weight_decay=1e-4)),
    LibraryDefault("rmsprop_eps_placement_and_decay", lambda c: c.optimizer == "rmsprop",
                   lambda c: _with_hp(c, alpha=0.99, eps=1e-8, eps_in_sqrt=False),
                   lambda c: _with_hp(c, alpha=0.9, eps=1e-8, eps_in_sqrt=True)),
    LibraryDefault("rmsprop_lr_in_momentum",
                   lambda c: c.optimizer == "rmsprop" and c.hparams["momentum"] > 0,
                   lambda c: _with_options(c, lr_in_momentum=False),
                   lambda c: _with_options(c, lr_in_momentum=True)),
    LibraryDefault("adagrad_eps_and_initial_accumulator", lambda c: c.optimizer == "adagrad",
                   lambda c: _with_hp(c, eps=1e-10, initial_accumulator_value=0.0,
                                      eps_in_sqrt=False),
                   lambda c: _with_hp(c, eps=1e-7, initial_accumulator_value=0.1,
                                      eps_in_sqrt=True)),
    LibraryDefault("amsgrad_maximum", lambda c: c.optimizer == "amsgrad",
                   lambda c: _with_hp(c, max_of_bias_corrected=False),
                   lambda c: _with_hp(c, max_of_bias_corrected=True)),
    LibraryDefault("clip_by_global_norm_epsilon", lambda c: c.hparams["clip_norm"] > 0,
                   lambda c: _with_hp(c, clip_norm_eps=1e-6),
                   lambda c: _with_hp(c, clip_norm_eps=0.0)),
    LibraryDefault("cosine_schedule_past_period", lambda c: c.option("schedule") == "cosine",
                   lambda c: _with_options(c, cosine_past_period="continue"),
                   lambda c: _with_options(c, cosine_past_period="hold")),
)
"""Every default that differs between the libraries; each names its catalogue entry."""


def library_case(case: Case, framework: str) -> Case:
    """``case`` as ``framework``'s defaults make it (``torch`` or ``jax``)."""
    if framework not in ("torch", "jax"):
        raise ValueError(f"framework: invalid value {framework!r}; allowed: torch, jax")
    for default in LIBRARY_DEFAULTS:
        if default.applies(case):
            case = getattr(default, framework)(case)
    return case


def differing_conventions(case: Case) -> tuple[str, ...]:
    """The catalogue conventions whose library defaults differ for this named case."""
    return tuple(d.convention for d in LIBRARY_DEFAULTS
                 if d.applies(case) and d.torch(case) != d.jax(case))


@dataclass(frozen=True)
class PortingRow:
    """One named case run at each library's defaults."""

    case: Case
    torch_case: Case
    jax_case: Case
    gradient: float  # normwise, largest over parameters, at the initial parameters
    after_first: float  # ... after one step
    after_last: float  # ... after case.steps steps
    state: float  # optimizer state and running statistics, at their worst step
    disagrees: bool
    conventions: tuple[str, ...]
    verdict: str  # "agree", "explained", "unexplained: ..."


def _largest(differences, quantity: str) -> float:
    values = [d.normwise for d in differences if d.quantity == quantity]
    return float(max(values)) if values else float("nan")


def port(case: Case) -> PortingRow:
    """Run ``case`` at torch's and at optax's defaults and explain any difference (torch
    with one intra-op thread, as in :func:`gradparity.harness.runner.run_case`)."""
    with one_torch_thread():
        return _port(case)


def _port(case: Case) -> PortingRow:
    torch_case, jax_case = library_case(case, "torch"), library_case(case, "jax")
    problem = make_problem(case)  # hyperparameters and options never change the data
    torch_result = get_adapter("torch").run(torch_case, problem)
    jax_result = get_adapter("jax").run(jax_case, problem)
    pair = compare_pair(jax_result, torch_result, torch_case)
    disagrees = not all(d.passed for d in pair)
    conventions = differing_conventions(case)
    steps = case.steps
    row = dict(
        case=case, torch_case=torch_case, jax_case=jax_case,
        gradient=_largest(pair, "gradient"),
        after_first=_largest(pair, "params@1") if steps else float("nan"),
        after_last=_largest(pair, f"params@{steps}") if steps else float("nan"),
        state=_largest(pair, "state") if steps else float("nan"),
        disagrees=disagrees, conventions=conventions,
    )
    if not disagrees:
        return PortingRow(**row, verdict="agree")
    if not conventions:
        return PortingRow(**row, verdict="unexplained: no catalogued convention differs")
    # the reference in each library's convention must reproduce each library's result
    reproduced = []
    for framework, library, result in (("torch", torch_case, torch_result),
                                       ("jax", jax_case, jax_result)):
        reference = get_adapter("numpy").run(library, problem)
        checks = compare_pair(result, reference, library)
        reproduced.append((framework, all(d.passed for d in checks)))
    missing = [framework for framework, ok in reproduced if not ok]
    if missing:
        return PortingRow(**row, verdict="unexplained: the reference in the "
                          f"{' and '.join(missing)} convention does not reproduce it")
    return PortingRow(**row, verdict="explained")


def porting_cases() -> list[Case]:
    """Named cases that touch every library default in :data:`LIBRARY_DEFAULTS`, plus
    controls that should agree."""
    base = dict(layer_sizes=(4, 16, 16, 3), loss="softmax_cross_entropy", dtype="float64")
    return [
        Case(hidden_activation="tanh", **base),  # control: no differing default
        Case(hidden_activation="tanh", optimizer="adam", hyperparameters={"lr": 0.01}, **base),
        Case(hidden_activation="gelu", **base),
        Case(hidden_activation="tanh", optimizer="adamw", hyperparameters={"lr": 0.01}, **base),
        Case(hidden_activation="tanh", optimizer="rmsprop", hyperparameters={"lr": 0.01}, **base),
        Case(hidden_activation="tanh", optimizer="rmsprop",
             hyperparameters={"lr": 0.01, "momentum": 0.9}, **base),
        Case(hidden_activation="tanh", optimizer="adagrad", hyperparameters={"lr": 0.1}, **base),
        Case(hidden_activation="tanh", optimizer="amsgrad", hyperparameters={"lr": 0.01}, **base),
        Case(hidden_activation="tanh", hyperparameters={"lr": 0.1, "clip_norm": 0.05}, **base),
        Case(hidden_activation="tanh", options={"schedule": "cosine", "cosine_period": 4},
             **base),
        # the layers beyond the MLP: a control, BatchNorm, LayerNorm, a transformer block
        *(Case(architecture=name, loss="softmax_cross_entropy", dtype="float64")
          for name in ("cnn", "mlp-bn", "resmlp-ln", "transformer")),
    ]


def run_porting(cases: Sequence[Case] | None = None) -> list[PortingRow]:
    """Every porting case (default: :func:`porting_cases`)."""
    return [port(case) for case in (porting_cases() if cases is None else cases)]
