"""Prototype banks: a training set encoded once and grouped by class, the class prototypes of
CFProto (:mod:`jaxcf.methods` ``cfproto``) are drawn from.

A bank holds every training instance's code (the autoencoder's ``encode``, or the flattened
input itself when there is no autoencoder: the paper's k-d-tree fallback, a prototype in input
space), its class, and each class's mean code. A query's prototype for class ``t`` is the mean
code of the ``k`` training instances of class ``t`` nearest (in Euclidean distance) to the
query's own code, or the class's mean code over all its instances (``k=None``, alibi's default
with an encoder).

The paper (and alibi's ``fit``) labels the training instances by the classifier's predictions,
not by their ground truth: :func:`prototype_bank` does so when given the ``classifier``.

A bank records what it was built from: the per-instance input shape and a fingerprint of the
encoder (SHA-256 over its arrays; ``"input"`` without one), so that a search refuses prototypes
built with another encoder or from data of another shape. ``to_arrays``/``from_arrays`` keep a
bank on disk (an ``.npz``), the encoder supplied again when it is read back.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxcf.core import as_pure, as_pytree, checks, plain_leaf

Array = jax.Array

INPUT_SPACE = "input"
"""The fingerprint of a bank without an encoder (codes are the flattened inputs)."""


def model_digest(model: Any) -> str:
    """SHA-256 over the arrays of a model's pytree form, by path (the fingerprint a bank keeps
    of its encoder)."""
    tree = as_pytree(model)
    h = hashlib.sha256()
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(jax.device_get(plain_leaf(leaf))))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def autoencoder_code_dim(autoencoder: Any, input_shape: tuple[int, ...], *, decode: bool) -> int:
    """Traces (never compiles) ``encode`` (and ``decode`` when asked) on one input; returns the
    code width.

    Raises:
      TypeError: no ``encode`` (or ``decode``) method.
      ValueError: codes that are not ``[1, d]``, decodings of another shape than the input, or
        an autoencoder that cannot take such inputs.
    """
    names = ("encode", "decode") if decode else ("encode",)
    for name in names:
        if not callable(getattr(autoencoder, name, None)):
            raise TypeError(
                f"the autoencoder must offer {name}(...) (codes [B, d] of inputs [B, ...]"
                + (" and their reconstructions" if decode else "")
                + ")"
            )
    probe = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    try:
        code = jax.eval_shape(autoencoder.encode, probe)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"autoencoder.encode cannot take inputs of shape {_shape_str(input_shape)}: {e}"
        ) from e
    if len(code.shape) != 2 or code.shape[0] != 1:
        raise ValueError(
            f"autoencoder.encode must return codes [B, d], got {_shape_str(code.shape)}"
        )
    if decode:
        try:
            out = jax.eval_shape(autoencoder.decode, jax.ShapeDtypeStruct(code.shape, jnp.float32))
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(f"autoencoder.decode cannot take its own codes: {e}") from e
        if tuple(out.shape) != (1, *input_shape):
            raise ValueError(
                f"autoencoder.decode gives {_shape_str(out.shape[1:])} per input, not the "
                f"input shape {_shape_str(input_shape)}"
            )
    return int(code.shape[1])


class PrototypeBank(struct.PyTreeNode):
    """A training set's codes by class (see the module docstring); a pytree, its arrays leaves.

    Attributes:
      codes: ``[N, d]`` float32, one code per training instance.
      labels: ``[N]`` int32 classes.
      means: ``[C, d]`` float32 mean code per class (zeros for a class without instances).
      autoencoder: the encoder's pytree (offering ``encode``), or ``None`` for input space.
      counts: training instances per class (static).
      input_shape: the per-instance input shape the codes were computed from (static).
      fingerprint: :func:`model_digest` of the encoder, or ``"input"`` (static).
    """

    codes: Array
    labels: Array
    means: Array
    autoencoder: Any = None
    counts: tuple[int, ...] = struct.field(pytree_node=False, default=())
    input_shape: tuple[int, ...] = struct.field(pytree_node=False, default=())
    fingerprint: str = struct.field(pytree_node=False, default=INPUT_SPACE)

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def code_dim(self) -> int:
        return int(self.codes.shape[1])

    @property
    def in_input_space(self) -> bool:
        return self.fingerprint == INPUT_SPACE

    def default_k(self, k: int | None) -> int | None:
        """``k`` as a search uses it: ``None`` means all of a class's instances with an encoder
        and the single nearest instance in input space (alibi's k-d-tree default)."""
        if k is None and self.in_input_space:
            return 1
        return k

    def encode(self, x: Array) -> Array:
        """Codes ``[B, d]`` (float32) of inputs ``[B, ...]`` under the bank's encoder."""
        return encode_with(self.autoencoder, x)

    def prototypes(self, code: Array, target: Array, k: int | None) -> Array:
        """Per-query prototypes ``[B, d]``: the mean of the ``k`` codes of class ``target [B]``
        nearest to ``code [B, d]``, or the class's mean code (``k=None``; static ``k``).
        Callers check beforehand that each target class has at least ``k`` instances."""
        if k is None:
            return self.means[target]
        # Squared distances by the expansion |a|^2 - 2 a.b + |b|^2, at full float32 precision
        # (a TF32 matmul on a GPU could reorder near neighbours).
        cross = jnp.matmul(code, self.codes.T, precision=jax.lax.Precision.HIGHEST)
        d2 = jnp.sum(code * code, axis=1)[:, None] - 2.0 * cross
        d2 = d2 + jnp.sum(self.codes * self.codes, axis=1)[None, :]
        d2 = jnp.where(self.labels[None, :] == target[:, None], d2, jnp.inf)
        _, idx = jax.lax.top_k(-d2, k)  # [B, k], nearest first
        return jnp.mean(self.codes[idx], axis=1)

    def check_targets(self, target: np.ndarray, k: int | None) -> None:
        """Raises ValueError if a target class has fewer than ``k`` training instances (none,
        for ``k=None``)."""
        need = 1 if k is None else k
        counts = np.asarray(self.counts)
        classes = np.unique(np.asarray(target))
        short = [int(c) for c in classes if counts[c] < need]
        if short:
            have = {c: int(counts[c]) for c in short}
            raise ValueError(
                f"the prototypes need at least {need} training instances of each target class "
                f"(k={k}); the bank has {have} (class: instances): lower k or build the bank "
                "from more training data"
            )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The bank as named host arrays (for ``np.savez``); the encoder is not among them."""
        return {
            "codes": np.asarray(self.codes),
            "labels": np.asarray(self.labels),
            "counts": np.asarray(self.counts, np.int64),
            "input_shape": np.asarray(self.input_shape, np.int64),
            "fingerprint": np.asarray(self.fingerprint),
        }

    @classmethod
    def from_arrays(cls, arrays: Any, autoencoder: Any = None) -> PrototypeBank:
        """A bank read back from :meth:`to_arrays` with its encoder.

        Raises:
          ValueError: ``autoencoder`` is not the encoder the bank was built with (or one is
            given for a bank built in input space, or none for a bank built with one).
        """
        fingerprint = str(arrays["fingerprint"])
        given = INPUT_SPACE if autoencoder is None else model_digest(autoencoder)
        if given != fingerprint:
            raise ValueError(_mismatch(fingerprint, given))
        codes = jnp.asarray(arrays["codes"], jnp.float32)
        labels = jnp.asarray(arrays["labels"], jnp.int32)
        counts = tuple(int(c) for c in arrays["counts"])
        return cls(
            codes=codes,
            labels=labels,
            means=_class_means(np.asarray(codes), np.asarray(labels), len(counts)),
            autoencoder=None if autoencoder is None else as_pytree(autoencoder),
            counts=counts,
            input_shape=tuple(int(d) for d in arrays["input_shape"]),
            fingerprint=fingerprint,
        )


def _mismatch(built: str, given: str) -> str:
    what = {INPUT_SPACE: "in input space (no encoder)"}
    return (
        f"the prototypes were built {what.get(built, 'with encoder ' + built[:12])}, but the "
        f"encoder given is {what.get(given, given[:12])}: rebuild the bank with this encoder "
        "(prototype_bank) or pass the one it was built with"
    )


def check_fingerprint(bank: PrototypeBank, encoder: Any) -> None:
    """Raises ValueError unless ``encoder`` (``None``: input space) is the one ``bank`` was
    built with, by :func:`model_digest`."""
    given = INPUT_SPACE if encoder is None else model_digest(encoder)
    if given != bank.fingerprint:
        raise ValueError(_mismatch(bank.fingerprint, given))


def _class_means(codes: np.ndarray, labels: np.ndarray, num_classes: int) -> Array:
    sums = np.zeros((num_classes, codes.shape[1]), np.float64)
    np.add.at(sums, labels, codes.astype(np.float64))
    counts = np.bincount(labels, minlength=num_classes)
    return jnp.asarray(sums / np.maximum(counts, 1)[:, None], jnp.float32)


def encode_with(encoder: Any, x: Array) -> Array:
    """Codes ``[B, d]`` (float32) of inputs ``[B, ...]``: ``encoder.encode(x)``, or the flattened
    inputs for ``encoder=None`` (input space)."""
    if encoder is None:
        return x.reshape(x.shape[0], -1).astype(jnp.float32)
    return encoder.encode(x).astype(jnp.float32)


_encode_block = jax.jit(encode_with)


@jax.jit
def _predict_block(classifier: Any, x: Array) -> Array:
    return jnp.argmax(classifier.logits(x), axis=-1).astype(jnp.int32)


def _blocks(fn, x: np.ndarray, size: int) -> np.ndarray:
    """``fn`` over ``x`` in blocks of ``size`` rows, the last one padded (one compilation)."""
    out = []
    for start in range(0, len(x), size):
        block = x[start : start + size]
        n = len(block)
        if n < size and len(x) > size:
            block = np.concatenate([block, np.repeat(block[-1:], size - n, axis=0)])
        out.append(np.asarray(fn(jnp.asarray(block)))[:n])
    return np.concatenate(out)


def prototype_bank(
    x: Any,
    labels: Any = None,
    *,
    classifier: Any = None,
    autoencoder: Any = None,
    num_classes: int | None = None,
    batch_size: int = 512,
) -> PrototypeBank:
    """Encodes a training set once into a :class:`PrototypeBank`.

    Args:
      x: ``[N, ...]`` training inputs (images, series or encoded rows), in the classifier's
        domain.
      labels: ``[N]`` int classes; ``None`` labels each instance by ``classifier``'s prediction
        (as the paper and alibi do).
      classifier: offers ``logits``; labels the instances when ``labels`` is ``None`` and gives
        ``num_classes`` when that is ``None``.
      autoencoder: offers ``encode(x) -> [B, d]`` (and ``decode`` for CFProto's reconstruction
        term; :class:`jaxcf.models.VAEModel` does); ``None`` keeps the codes in input space.
      num_classes: the number of classes ``C`` (default: the classifier's outputs, else
        ``max(labels) + 1``).
      batch_size: rows encoded (and labelled) per compiled call.

    Raises:
      TypeError: non-numeric inputs or labels, an autoencoder without ``encode``.
      ValueError: an empty or non-finite ``x``, labels of another length or out of range,
        neither labels nor a classifier, an autoencoder that cannot encode ``x``.
    """
    x = np.asarray(jax.device_get(checks.check_queries(x)), np.float32)
    input_shape = tuple(int(d) for d in x.shape[1:])
    pure = None if classifier is None else as_pure(classifier)
    if pure is not None:
        width = checks.classifier_io(pure, input_shape)
        num_classes = width if num_classes is None else num_classes
    if labels is None:
        if pure is None:
            raise ValueError("prototype_bank needs the labels or a classifier to label x with")
        labels = _blocks(lambda b: _predict_block(pure, b), x, batch_size)
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integer classes, got dtype {labels.dtype}")
    if labels.shape != (len(x),):
        raise ValueError(f"labels must be [N] = [{len(x)}], got shape {labels.shape}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}"
        )
    encoder = None if autoencoder is None else as_pytree(autoencoder)
    if encoder is not None:
        autoencoder_code_dim(encoder, input_shape, decode=False)
    codes = _blocks(lambda b: _encode_block(encoder, b), x, batch_size).reshape(len(x), -1)
    labels = labels.astype(np.int32)
    return PrototypeBank(
        codes=jnp.asarray(codes, jnp.float32),
        labels=jnp.asarray(labels),
        means=_class_means(codes, labels, num_classes),
        autoencoder=encoder,
        counts=tuple(int(c) for c in np.bincount(labels, minlength=num_classes)),
        input_shape=input_shape,
        fingerprint=INPUT_SPACE if encoder is None else model_digest(encoder),
    )
