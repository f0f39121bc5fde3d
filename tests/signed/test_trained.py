"""Networks trained here on digits are less frustrated than their sign-shuffled null models; their
initializations are not. The numbers are printed (`pytest -s`) and put in every assertion message.

Measured (training seeds 0, 1, 2; null seed 1; 32 block-null samples, 16 layerwise restarts): the
MLP's z-score goes from (1.4, 0.2, −0.4) at initialization to (−24, −18, −17) trained, for every
seed. The CNN's goes from (0.6, 0.9, 0.2) to (−2.7, −0.2, 0.1): below its null for seed 0 only, and
the same with the per-kernel null or annealing, or a hidden dense layer. Its first convolution
(one input channel, each weight used 64 times) makes the null spread wide, and its pooling edges
are not shuffled. So the CNN case is an expected failure (not strict): it runs, prints its
numbers, and does not claim an effect that a different seed would not show.
"""

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


CNN_NOT_ROBUST = pytest.mark.xfail(
    strict=False, reason="small digits CNN: below its null for some training seeds only (see module doc)"
)


@pytest.fixture(scope="module", params=["mlp", pytest.param("cnn", marks=CNN_NOT_ROBUST)])
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
    # well below the null: measured MLP z = −24, −18, −17 over three training seeds
    assert float(final.zscore()) < -5, report


def test_initialization_is_not_less_frustrated_than_its_null_models(trained):
    _, (init, final), report = trained
    # the initial weights' signs are exchangeable, as the block null model's (|z| <= 1.4 measured)
    assert abs(float(init.zscore())) < 3, report
    assert float(final.zscore()) < float(init.zscore()) - 5, report
