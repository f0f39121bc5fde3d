"""Small Equinox classifiers of scikit-learn's digits (8×8 images), trained with Optax.

The models are `eqx.nn.Sequential`s of `Linear`, `Conv2d`, pooling and `Lambda(jax.nn.relu)` /
`Lambda(jnp.ravel)` layers, so `jaxflow.signed.importers.from_equinox` reads their signed graph.
Training is deterministic given the key and keeps checkpoints along the way, from initialization
to the end, for studies that follow the network during training.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import InputError, check_key
from ._progress import progress_bar
from ._types import Array, Float, Int, Key
from .config import ModelConfig, TrainConfig

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)

DIGIT_MAX = 16.0
"""scikit-learn's digits have pixel values 0…16; inputs are scaled to [0, 1]."""


def input_shape(config: ModelConfig) -> tuple[int, ...]:
    """The shape of one input: `(64,)` for an MLP, `(1, 8, 8)` for a CNN."""
    return (int(np.prod(IMAGE_SHAPE)),) if config.kind == "mlp" else IMAGE_SHAPE


def make_model(config: ModelConfig, key: Key, dtype=None) -> eqx.nn.Sequential:
    """The classifier described by `config`, with Equinox's default initialization."""
    key = check_key(key)
    dtype = dtype or jnp.result_type(float)
    relu = eqx.nn.Lambda(jax.nn.relu)
    if config.kind == "mlp":
        widths = (int(np.prod(IMAGE_SHAPE)), *config.hidden, NUM_CLASSES)
        keys = jax.random.split(key, len(widths) - 1)
        layers = []
        for i, k in enumerate(keys):
            layers.append(eqx.nn.Linear(widths[i], widths[i + 1], key=k, dtype=dtype))
            if i < len(keys) - 1:
                layers.append(relu)
        return eqx.nn.Sequential(layers)
    pool = eqx.nn.MaxPool2d if config.pool == "max" else eqx.nn.AvgPool2d
    chans = (IMAGE_SHAPE[0], *config.channels)
    keys = jax.random.split(key, len(chans))
    layers = []
    for i in range(len(config.channels)):
        k = config.kernel_size
        conv = eqx.nn.Conv2d(chans[i], chans[i + 1], k, padding=k // 2, key=keys[i], dtype=dtype)
        layers += [conv, relu, pool(kernel_size=2, stride=2)]
    side = IMAGE_SHAPE[1] // 2 ** len(config.channels)
    layers += [
        eqx.nn.Lambda(jnp.ravel),
        eqx.nn.Linear(chans[-1] * side * side, NUM_CLASSES, key=keys[-1], dtype=dtype),
    ]
    return eqx.nn.Sequential(layers)


class Dataset(NamedTuple):
    """Digits split into train and test sets; pixels scaled to `[0, 1]`."""

    x_train: Float[Array, "n_train ..."]
    y_train: Int[Array, " n_train"]
    x_test: Float[Array, "n_test ..."]
    y_test: Int[Array, " n_test"]


def load_digits(
    shape: tuple[int, ...] = (64,), *, test_fraction: float = 0.2, seed: int = 0, dtype=None
) -> Dataset:
    """scikit-learn's digits (1,797 images, shipped with the package), each reshaped to `shape`,
    split at random (`seed`) with a fraction `test_fraction` held out."""
    from sklearn.datasets import load_digits as _load

    if int(np.prod(shape)) != 64:
        raise InputError(f"shape must hold the 64 pixels of a digit, e.g. (64,) or (1, 8, 8), got {shape}")
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = _load(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    dtype = dtype or jnp.result_type(float)
    x = jnp.asarray(x[order] / DIGIT_MAX, dtype).reshape(len(y), *shape)
    y = jnp.asarray(y[order], jnp.result_type(int))
    return Dataset(x[n_test:], y[n_test:], x[:n_test], y[:n_test])


class Checkpoint(NamedTuple):
    """The model after `epoch` epochs (0 = initialization) with its train loss and test accuracy."""

    epoch: int
    model: eqx.Module
    train_loss: float
    test_accuracy: float


class TrainResult(NamedTuple):
    """The trained model, its checkpoints (first at epoch 0, last at the end) and the mean
    training loss of every epoch."""

    model: eqx.Module
    checkpoints: tuple[Checkpoint, ...]
    losses: tuple[float, ...]


def _loss(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@eqx.filter_jit
def _evaluate(model, x, y):
    logits = jax.vmap(model)(x)
    return _loss(model, x, y), jnp.mean((jnp.argmax(logits, -1) == y).astype(logits.dtype))


@functools.cache
def _optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    # cached so that equal configs hand `_epoch` the same (static) optimizer: no retrace
    return {"adam": optax.adam, "sgd": optax.sgd}[name](learning_rate)


@eqx.filter_jit
def _epoch(model, opt_state, x, y, key, optimizer, batch_size):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    n_batches = x.shape[0] // batch_size
    batches = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size].reshape(n_batches, -1)

    def step(carry, idx):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(lambda p: _loss(eqx.combine(p, static), x[idx], y[idx]))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
    return eqx.combine(params, static), opt_state, losses.mean()


def train(
    model: eqx.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    key: Key,
    callback: Callable[[Checkpoint], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Minimize the cross-entropy of `model` on `data.x_train` with Optax (`config.optimizer`),
    shuffled minibatches of `config.batch_size`; checkpoint at epoch 0, every
    `config.checkpoint_every` epochs and at the end, calling `callback` on each."""
    if config.batch_size > data.x_train.shape[0]:
        raise InputError(
            f"config.batch_size = {config.batch_size} exceeds the {data.x_train.shape[0]} training samples"
        )
    optimizer = _optimizer(config.optimizer, config.learning_rate)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    checkpoints, losses = [], []

    def checkpoint(epoch):
        train_loss, _ = _evaluate(model, data.x_train, data.y_train)
        _, accuracy = _evaluate(model, data.x_test, data.y_test)
        c = Checkpoint(epoch, model, float(train_loss), float(accuracy))
        checkpoints.append(c)
        if callback is not None:
            callback(c)

    checkpoint(0)
    keys = jax.random.split(key, config.epochs)
    for epoch in progress_bar(range(1, config.epochs + 1), desc="training", enabled=progress):
        with jax.numpy_dtype_promotion("standard"):  # Optax's Adam mixes int32 counts and floats
            model, opt_state, loss = _epoch(
                model, opt_state, data.x_train, data.y_train, keys[epoch - 1], optimizer, config.batch_size
            )
        losses.append(float(loss))
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            checkpoint(epoch)
    return TrainResult(model, tuple(checkpoints), tuple(losses))


def train_digits(
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    callback: Callable[[Checkpoint], None] | None = None,
    progress: bool = False,
) -> tuple[TrainResult, Dataset]:
    """Build the model of `model_config` and train it on digits: everything (initialization,
    split, shuffling) seeded by `config.seed`."""
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    data = load_digits(input_shape(model_config), test_fraction=config.test_fraction, seed=config.seed)
    model = make_model(model_config, init_key)
    return train(model, data, config, key=train_key, callback=callback, progress=progress), data
