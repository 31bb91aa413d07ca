"""The case spec: validation messages, ids, immutability."""

from __future__ import annotations

import dataclasses

import pytest

from gradparity.spec.case import Case
from gradparity.spec.matrix import default_cases, parity_cases, xor_case


def test_id_matches_the_documented_example() -> None:
    case = Case((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy", dtype="float64")
    assert case.id == "mlp4-16-16-3_tanh_softmax-ce_float64_sgd"


def test_id_names_every_non_default_field() -> None:
    assert xor_case().id == "mlp2-10-1_sigmoid_mse_float64_sgd_out-sigmoid_xor_b4_steps1000"
    mixed = Case((3, 4, 5, 2), ("relu", "tanh"), dtype="float32", batch_size=3, seed=2,
                 hyperparameters={"lr": 0.05}, steps=4)
    assert mixed.id == "mlp3-4-5-2_relu-tanh_mse_float32_sgd_lr0.05_b3_seed2_steps4"
    momentum = Case((3, 4, 2), optimizer="sgd",
                    hyperparameters={"lr": 0.1, "momentum": 0.9, "nesterov": True})
    assert momentum.id == "mlp3-4-2_tanh_mse_float64_sgd_momentum0.9_nesterov"
    adamw = Case((3, 4, 2), optimizer="adamw", hyperparameters={"lr": 1e-3})
    assert adamw.id == "mlp3-4-2_tanh_mse_float64_adamw_lr0.001"


def test_ids_are_unique_across_the_builtin_matrices() -> None:
    cases = [*parity_cases(), *default_cases(), xor_case("float32"), xor_case("float64")]
    ids = [case.id for case in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    # default_cases() re-uses the (4,16,16,3) test architecture on purpose
    shared = {case.id for case in default_cases()}
    assert duplicates <= shared


def test_case_is_frozen_and_hashable() -> None:
    case = Case((2, 3, 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        case.loss = "mse"  # type: ignore[misc]
    assert hash(case) == hash(Case((2, 3, 1)))
    assert case.hidden_activation == ("tanh",)
    assert case.hparams == {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                            "weight_decay": 0.0, "clip_value": 0.0, "clip_norm": 0.0,
                            "clip_norm_eps": 1e-6}


ALL_ACTIVATIONS = (
    "identity, sigmoid, tanh, relu, leaky_relu, elu, gelu, gelu_tanh, silu, softplus"
)
INVALID = [
    ({"layer_sizes": (4,)}, "layer_sizes", "at least two integers"),
    ({"layer_sizes": (4, 0, 2)}, "layer_sizes", "at least two integers"),
    ({"layer_sizes": "4-3"}, "layer_sizes", "at least two integers"),
    ({"hidden_activation": "swish"}, "hidden_activation", ALL_ACTIVATIONS),
    ({"hidden_activation": ("relu",)}, "hidden_activation", "sequence of 2"),
    ({"output_activation": "softmax"}, "output_activation", ALL_ACTIVATIONS),
    ({"loss": "hinge"}, "loss", "mse, softmax_cross_entropy"),
    ({"loss": "softmax_cross_entropy", "output_activation": "sigmoid"},
     "output_activation", "takes logits"),
    ({"dtype": "float16"}, "dtype", "float32, float64"),
    ({"batch_size": 0}, "batch_size", ">= 1"),
    ({"batch_size": True}, "batch_size", ">= 1"),
    ({"dataset": "mnist"}, "dataset", "xor, regression, blobs"),
    ({"dataset": "blobs"}, "dataset", "real-valued targets"),
    ({"dataset": "xor"}, "dataset", "layer_sizes (2, ..., 1)"),
    ({"seed": -1}, "seed", ">= 0"),
    ({"optimizer": "lamb"}, "optimizer", "sgd, adam, adamw"),
    ({"hyperparameters": {"beta1": 0.9}}, "hyperparameters", "lr, momentum, dampening"),
({"hyperparameters": {"lr": 0.1, "nesterov": 1}}, "hyperparameters['nesterov']", "True or False"),
({"hyperparameters": {"lr": 0.1, "nesterov": True}}, "hyperparameters['nesterov']",
 "momentum > 0"),
({"hyperparameters": {"lr": 0.1, "momentum": 1.5}}, "hyperparameters['momentum']", "[0, 1)"),
    ({"hyperparameters": {}}, "hyperparameters", "sets 'lr'"),
    ({"hyperparameters": {"lr": -0.1}}, "hyperparameters['lr']", "> 0"),
    ({"hyperparameters": {"lr": float("nan")}}, "hyperparameters['lr']", "> 0"),
    ({"steps": -1}, "steps", ">= 0"),
    ({"options": {"warmup": 3}}, "options", "negative_slope, elu_alpha"),
    ({"options": ["schedule"]}, "options", "a mapping with keys from"),
    ({"options": {"schedule": "linear"}}, "options['schedule']", "constant, step, cosine"),
    ({"options": {"dropout": 1.0}}, "options['dropout']", "[0, 0.95]"),
    ({"options": {"batches": 0}}, "options['batches']", "an integer in [1, 1000]"),
    ({"options": {"batches": 2.5}}, "options['batches']", "an integer in [1, 1000]"),
    ({"options": {"huber_delta": 0.5}}, "options['huber_delta']", "loss 'huber'"),
    ({"options": {"negative_slope": 0.2}}, "options['negative_slope']",
     "activation 'leaky_relu'"),
    ({"options": {"gamma": 0.1}}, "options['gamma']", "schedule 'step'"),
    ({"options": {"lr_in_momentum": True}}, "options['lr_in_momentum']",
     "'rmsprop' with momentum > 0"),
    ({"options": {"lr_in_momentum": "yes"}}, "options['lr_in_momentum']", "True or False"),
    ({"options": {"cosine_min_lr": float("inf")}}, "options['cosine_min_lr']", ">= 0"),
]


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    INVALID,
    ids=[f"{field}={next(iter(kwargs.values()))!r}" for kwargs, field, _ in INVALID],
)
def test_invalid_values_name_field_value_and_allowed(kwargs, field, fragment) -> None:
    arguments = {"layer_sizes": (4, 8, 8, 3), **kwargs}
    with pytest.raises(ValueError) as error:
        Case(**arguments)
    message = str(error.value)
    assert message.startswith(f"Case.{field}: invalid value"), message
    assert fragment in message, message


def test_softmax_cross_entropy_needs_two_outputs() -> None:
    with pytest.raises(ValueError, match=r"Case.layer_sizes: .*output width >= 2"):
        Case((4, 8, 1), loss="softmax_cross_entropy")


def test_options_appear_in_the_id_and_defaults_do_not_change_the_case() -> None:
    plain = Case((4, 8, 3), "tanh", loss="softmax_cross_entropy")
    assert Case((4, 8, 3), "tanh", loss="softmax_cross_entropy",
                options={"dropout": 0.0, "schedule": "constant"}) == plain
    varied = Case((4, 8, 3), "leaky_relu", loss="softmax_cross_entropy",
                  options={"negative_slope": 0.2, "schedule": "cosine", "batches": 3})
    assert varied.id == ("mlp4-8-3_leaky_relu_softmax-ce_float64_sgd_batches3_"
                         "negative_slope0.2_schedule-cosine")
    assert varied.option("negative_slope") == 0.2 and varied.option("dropout") == 0.0
    assert varied.to_dict()["options"] == {"batches": 3, "negative_slope": 0.2,
                                           "schedule": "cosine"}
    with pytest.raises(ValueError, match=r"option: invalid value 'warmup'; allowed: "):
        varied.option("warmup")


def test_from_dict_rebuilds_the_case_from_its_json_description() -> None:
    import json

    case = Case((4, 8, 3), ("relu",), loss="softmax_cross_entropy", optimizer="adam",
                hyperparameters={"lr": 0.01}, options={"schedule": "cosine", "batches": 2})
    again = Case.from_dict(json.loads(json.dumps(case.to_dict())))
    assert again == case and again.id == case.id
