import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.datasets import load_digits as sklearn_digits

from jaxflow.config import ConfigError, ModelConfig, TrainConfig, parse
from jaxflow.train import load_digits, make_model, train, train_digits

MLP = ModelConfig("mlp", hidden=(32,))
SHORT = TrainConfig(epochs=6, checkpoint_every=4)


@pytest.fixture(scope="module")
def mlp_run():
    return train_digits(MLP, SHORT)


def _weights(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))


def test_digits_split_is_a_partition():
    x, y = sklearn_digits(return_X_y=True)
    data = load_digits((1, 8, 8), test_fraction=0.25, seed=3)
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert len(data.y_test) == round(0.25 * len(y)) and len(data.y_train) + len(data.y_test) == len(y)
    both = np.concatenate([data.x_train, data.x_test]).reshape(len(y), 64)
    # every image appears exactly once, scaled by 1/16 into [0, 1]
    assert np.array_equal(np.sort(both * 16, axis=0), np.sort(x, axis=0))
    rows = {tuple(r) for r in both * 16}
    assert len(rows) == len({tuple(r) for r in x})
    assert both.min() == 0 and both.max() == 1


def test_model_parameter_counts_and_shapes(key):
    mlp = make_model(ModelConfig("mlp", hidden=(20, 12)), key)
    assert sum(w.size for w in _weights(mlp)) == 65 * 20 + 21 * 12 + 13 * 10
    cnn = make_model(ModelConfig("cnn", channels=(4, 6), kernel_size=3), key)
    # two 3x3 convs with biases, then 8x8 -> 4x4 -> 2x2 leaves 6*2*2 features
    assert sum(w.size for w in _weights(cnn)) == (9 * 1 + 1) * 4 + (9 * 4 + 1) * 6 + (24 + 1) * 10


def test_training_is_deterministic_and_learns(mlp_run):
    (result, _), (again, _) = mlp_run, train_digits(MLP, SHORT)
    for a, b in zip(_weights(result.model), _weights(again.model)):
        assert np.array_equal(a, b)
    assert [c.epoch for c in result.checkpoints] == [0, 4, 6]
    assert result.checkpoints[-1].model is result.model and len(result.losses) == SHORT.epochs
    first, last = result.checkpoints[0], result.checkpoints[-1]
    # an untrained 10-class classifier sits near chance; a trained MLP on digits is far above it
    assert first.test_accuracy < 0.3 and last.test_accuracy > 0.9, (first, last)
    assert last.train_loss < 0.5 * first.train_loss


def test_checkpoint_loss_is_the_cross_entropy(mlp_run):
    result, data = mlp_run
    c = result.checkpoints[1]
    logits = np.asarray(jax.vmap(c.model)(data.x_train))
    y = np.asarray(data.y_train)
    expect = np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])
    assert c.train_loss == pytest.approx(expect, rel=1e-12)
    test_logits = np.asarray(jax.vmap(c.model)(data.x_test))
    assert c.test_accuracy == np.mean(test_logits.argmax(1) == np.asarray(data.y_test))


def test_full_batch_sgd_epoch_is_one_gradient_step(key):
    data = load_digits((64,), seed=1)
    model = make_model(MLP, key)
    config = TrainConfig(epochs=1, optimizer="sgd", learning_rate=0.5, batch_size=len(data.y_train))
    seen = []
    result = train(model, data, config, key=key, callback=seen.append)
    assert [c.epoch for c in seen] == [0, 1]

    def cross_entropy(m):
        logits = jax.vmap(m)(data.x_train)
        picked = jnp.take_along_axis(logits, data.y_train[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    grads = eqx.filter_grad(cross_entropy)(model)
    for w, w0, g in zip(_weights(result.model), _weights(model), _weights(grads)):
        np.testing.assert_allclose(w, w0 - 0.5 * g, rtol=0, atol=1e-12)


def test_bad_configs_are_rejected(key):
    with pytest.raises(ConfigError, match="channels"):
        parse(ModelConfig, {"kind": "cnn", "channels": [2, 2, 2, 2]})
    with pytest.raises(ConfigError, match="kernel_size"):
        parse(ModelConfig, {"kernel_size": 2})
    with pytest.raises(ConfigError, match="learning_rate"):
        parse(TrainConfig, {"learning_rate": -1.0})
    with pytest.raises(ValueError, match="batch_size"):
        train(make_model(MLP, key), load_digits(), TrainConfig(batch_size=5000), key=key)
    with pytest.raises(ValueError, match="shape"):
        load_digits((1, 7, 7))
