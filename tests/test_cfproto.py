"""CFProto beyond the contract table (tests/test_contract.py runs its batched search against a
per-query reference loop): the prototype bank, and the inputs it refuses before compiling."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxcf import runner
from jaxcf.core import FunctionClassifier
from jaxcf.methods import (
    CFProtoConfig,
    PrototypeBank,
    cfproto,
    cfproto_search,
    make,
    method_needs,
    prototype_bank,
)
from tests.conftest import mesh


class LinearCoder(struct.PyTreeNode):
    """A random linear autoencoder of flattened inputs: enough of the protocol for the bank."""

    w: jax.Array  # [D, d]
    shape: tuple[int, ...] = struct.field(pytree_node=False)

    def encode(self, x):
        return x.reshape(x.shape[0], -1) @ self.w

    def decode(self, z):
        return jax.nn.sigmoid(z @ self.w.T).reshape((z.shape[0], *self.shape))


def coder(shape, d: int = 6, seed: int = 0) -> LinearCoder:
    size = int(np.prod(shape))
    w = jax.random.normal(jax.random.key(seed), (size, d)) / np.sqrt(size)
    return LinearCoder(w, tuple(shape))


def _linear(params, x):
    return x.reshape(x.shape[0], -1) @ params


def linear_classifier(features: int, classes: int, seed: int = 1, domain=None) -> Any:
    """A fixed linear classifier of flattened inputs (any input shape with ``features``
    values)."""
    w = jax.random.normal(jax.random.key(seed), (features, classes))
    return FunctionClassifier(_linear, w, domain=domain)


@pytest.fixture(scope="module")
def digits(mnist_test):
    """200 real test digits (training rows for the banks) and 6 queries."""
    images = np.asarray(mnist_test.images[:206])
    return images[6:], np.asarray(mnist_test.labels[6:206]), images[:6]


# ----------------------------------------------------------------------------- the bank


def test_bank_encodes_once_and_groups_by_class(digits):
    train, labels, _ = digits
    ae = coder(train.shape[1:])
    bank = prototype_bank(train, labels, autoencoder=ae, batch_size=64)  # padded last block
    codes = np.asarray(ae.encode(jnp.asarray(train)))
    np.testing.assert_allclose(bank.codes, codes, rtol=1e-5, atol=1e-5)
    assert bank.counts == tuple(np.bincount(labels, minlength=10))
    for c in range(10):
        np.testing.assert_allclose(bank.means[c], codes[labels == c].mean(0), atol=1e-5)
    assert bank.input_shape == (28, 28, 1) and not bank.in_input_space
    # The k nearest codes of the target class, averaged (a query's own code as the probe).
    q = jnp.asarray(codes[:3])
    t = jnp.asarray([labels[0], 3, 7], jnp.int32)
    got = np.asarray(bank.prototypes(q, t, 4))
    for i in range(3):
        rows = codes[labels == int(t[i])]
        near = np.argsort(((rows - codes[i]) ** 2).sum(1))[:4]
        np.testing.assert_allclose(got[i], rows[near].mean(0), atol=1e-5)
    np.testing.assert_allclose(bank.prototypes(q, t, None), bank.means[t])


def test_bank_labels_by_prediction_in_input_space(digits):
    train, _, _ = digits
    clf = linear_classifier(784, 10, domain=(0.0, 1.0))
    bank = prototype_bank(train, classifier=clf)
    predicted = np.argmax(np.asarray(clf.logits(jnp.asarray(train))), -1)
    np.testing.assert_array_equal(bank.labels, predicted)
    np.testing.assert_array_equal(bank.codes, train.reshape(len(train), -1))
    assert bank.in_input_space and bank.default_k(None) == 1
    with pytest.raises(ValueError, match="labels or a classifier"):
        prototype_bank(train)
    with pytest.raises(ValueError, match="labels must be"):
        prototype_bank(train, np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="integer"):
        prototype_bank(train, np.zeros(len(train), np.float32))


def test_bank_round_trips_and_refuses_another_encoder(digits):
    train, labels, _ = digits
    ae = coder(train.shape[1:])
    bank = prototype_bank(train, labels, autoencoder=ae)
    back = PrototypeBank.from_arrays(bank.to_arrays(), autoencoder=ae)
    np.testing.assert_array_equal(back.codes, bank.codes)
    np.testing.assert_allclose(back.means, bank.means)
    assert (back.counts, back.fingerprint) == (bank.counts, bank.fingerprint)
    with pytest.raises(ValueError, match="rebuild the bank"):
        PrototypeBank.from_arrays(bank.to_arrays(), autoencoder=coder(train.shape[1:], seed=5))
    with pytest.raises(ValueError, match="rebuild the bank"):
        PrototypeBank.from_arrays(bank.to_arrays())


# ----------------------------------------------------------------------------- bad input


def test_config_values_are_validated():
    for bad in (
        {"beta": -0.1},
        {"k": 0},
        {"c_steps": 0},
        {"patience": -1},
        {"margin": "hinge"},
        {"threshold": 0.0},
        {"learning_rate": 0.0},
        {"domain": (1.0, 0.0)},
    ):
        with pytest.raises(ValueError, match="CFProtoConfig"):
            CFProtoConfig(**bad)
    assert method_needs("cfproto") == ("classifier", "prototypes")


def test_missing_models_are_refused_when_built(digits):
    train, labels, _ = digits
    clf = linear_classifier(784, 10, domain=(0.0, 1.0))
    plain = prototype_bank(train, labels)
    ae = coder(train.shape[1:])
    with pytest.raises(ValueError, match="gamma=1.0 .* no"):
        make("cfproto", CFProtoConfig(gamma=1.0), classifier=clf, prototypes=plain)
    with pytest.raises(ValueError, match="theta=100.0 .* prototypes"):
        cfproto_search(clf, None, CFProtoConfig())
    with pytest.raises(ValueError, match="needs a 'prototypes'"):
        make("cfproto", CFProtoConfig(), classifier=clf)
    # Without prototypes nor an autoencoder: the elastic-net search alone.
    cfproto_search(clf, None, CFProtoConfig(theta=0.0))
    # An input-space bank takes any autoencoder for the reconstruction term alone.
    cfproto_search(clf, plain, CFProtoConfig(gamma=1.0), autoencoder=ae)
    with pytest.raises(TypeError, match="PrototypeBank"):
        cfproto_search(clf, train, CFProtoConfig())


def test_prototypes_of_another_encoder_shape_or_classes_are_refused(digits):
    train, labels, _ = digits
    clf = linear_classifier(784, 10, domain=(0.0, 1.0))
    ae = coder(train.shape[1:])
    bank = prototype_bank(train, labels, autoencoder=ae)
    other = coder(train.shape[1:], seed=9)
    with pytest.raises(ValueError, match="built with encoder"):
        cfproto_search(clf, bank, CFProtoConfig(gamma=1.0), autoencoder=other)
    with pytest.raises(ValueError, match="built with encoder"):  # the bank's own, swapped
        cfproto_search(clf, bank.replace(autoencoder=other), CFProtoConfig())
    with pytest.raises(ValueError, match="classes"):
        cfproto_search(linear_classifier(784, 3), bank, CFProtoConfig())
    # Prototypes of flat rows for a classifier that takes any shape: refused at the queries.
    rows = prototype_bank(train.reshape(len(train), -1)[:, :50], labels)
    search = cfproto_search(linear_classifier(50, 10), rows, CFProtoConfig())
    with pytest.raises(ValueError, match="built from data of shape"):
        search.check(train[:4, :5, :10, 0], labels[:4])
    with pytest.raises(ValueError, match="cannot take inputs"):
        cfproto_search(clf, rows, CFProtoConfig())  # the classifier does not take [50]


def test_bad_queries_and_targets_raise_before_compiling(digits, tmp_path):
    train, labels, x = digits
    clf = linear_classifier(784, 10, domain=(0.0, 1.0))
    few = prototype_bank(train[:30], labels[:30])
    counts = np.bincount(labels[:30], minlength=10)
    rare = int(np.argmin(np.where(counts > 0, counts, 99)))
    explainer = make(
        "cfproto", CFProtoConfig(k=int(counts[rare]) + 1), classifier=clf, prototypes=few
    )
    cases = [
        ("k-above-class", x, np.full(len(x), rare, np.int32), ValueError, "at least"),
        ("soft", x, np.full((len(x), 10), 0.1, np.float32), TypeError, "class"),
        ("outside-domain", x + 2.0, np.zeros(len(x), np.int32), ValueError, "lie in"),
    ]
    if counts.min() == 0:  # a class the bank never saw has no prototype at all
        empty = int(np.argmin(counts))
        cases.append(("no-instances", x, np.full(len(x), empty, np.int32), ValueError, "at least"))
    for name, xb, tb, err, match in cases:
        before = runner.program_cache_size()
        with pytest.raises(err, match=match):
            explainer.check(xb, tb)
        with pytest.raises(err, match=match):
            runner.run(explainer, xb, tb, tmp_path / name, progress=False, mesh=mesh(1))
        assert not (tmp_path / name).exists(), name
        assert runner.program_cache_size() == before, name


def test_theta_zero_is_the_elastic_net_search_and_keeps_the_closest(digits):
    """Without prototypes the objective is CEM's elastic net; a second round at a lower ``c``
    never returns a farther counterfactual than the first round alone."""
    _, _, x = digits
    clf = linear_classifier(784, 10, domain=(0.0, 1.0))
    t = np.argsort(np.asarray(clf.logits(jnp.asarray(x))), -1)[:, -2].astype(np.int32)
    one = CFProtoConfig(
        theta=0.0, c_init=10.0, c_steps=1, max_iter=30, patience=30, margin="logits", kappa=2.0
    )
    first = cfproto(clf, None, x, t, one)
    both = cfproto(clf, None, x, t, dataclasses.replace(one, c_steps=2))
    assert np.asarray(first.success).all() and np.asarray(both.success).all()

    def en(r):
        d = (np.asarray(r.x_cf) - x).reshape(len(x), -1)
        return (d * d).sum(-1) + 0.1 * np.abs(d).sum(-1)

    assert np.all(en(both) <= en(first) + 1e-5)
    assert np.all(np.asarray(both.n_iter) == 60)
    np.testing.assert_array_equal(first.extras["c"], 10.0)
    assert set(np.asarray(both.extras["c"]).tolist()) <= {10.0, 5.0}
