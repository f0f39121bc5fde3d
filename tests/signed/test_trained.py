"""Networks trained here on digits are less frustrated than their sign-shuffled null models; their
initializations are not. The numbers are printed (`pytest -s`) and put in every assertion message."""

import jax
import pytest

from jaxflow.config import ModelConfig, TrainConfig
from jaxflow.signed.importers import from_equinox
from jaxflow.signed.nullmodels import null_model_frustration
from jaxflow.train import input_shape, train_digits

MODELS = {
    "mlp": ModelConfig("mlp", hidden=(32,)),
    "cnn": ModelConfig("cnn", channels=(4, 8), pool="max"),
}
TRAIN = TrainConfig(epochs=20, checkpoint_every=20)
NULL = {"samples": 32, "model": "block", "method": "layerwise", "restarts": 16}


def _summary(nul) -> str:
    total = float(nul.observed.total)
    return (
        f"δ/Σ|a| = {float(nul.observed.normalized):.4f}, null {float(nul.mean) / total:.4f} ± "
        f"{float(nul.std) / total:.4f}, z = {float(nul.zscore()):.2f}, p = {float(nul.pvalue()):.3f}"
    )


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request):
    config = MODELS[request.param]
    result, _ = train_digits(config, TRAIN)
    first, last = result.checkpoints[0], result.checkpoints[-1]
    nulls = [
        null_model_frustration(from_equinox(c.model, input_shape(config)), jax.random.key(1), **NULL)
        for c in (first, last)
    ]
    report = (
        f"{request.param} ({last.test_accuracy:.3f} test accuracy after {last.epoch} epochs)\n"
        f"  initialization: {_summary(nulls[0])}\n  trained:        {_summary(nulls[1])}"
    )
    print("\n" + report)
    return last, nulls, report


def test_trained_network_is_less_frustrated_than_its_null_models(trained):
    last, (init, final), report = trained
    assert last.test_accuracy > 0.9, report
    assert float(final.observed.value) < float(final.mean), report
    # well below the null (measured: MLP z ≈ −20, CNN z ≈ −2.7 with these seeds); not so at init
    assert float(final.zscore()) < -2, report


def test_initialization_is_not_less_frustrated_than_its_null_models(trained):
    _, (init, final), report = trained
    # the initial weights' signs are exchangeable, as the block null model's (measured z ≈ 0.2, 0.6)
    assert abs(float(init.zscore())) < 2, report
    assert float(final.zscore()) < float(init.zscore()) - 2, report
