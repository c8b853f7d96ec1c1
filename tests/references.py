"""Plain per-query reference loops for every method, written for the tests.

Each follows its published algorithm step by step for one query at a time, using JAX only for
the gradient of a single input; scoring, selection and updates are NumPy on the host. Targets of
every kind are scored here independently of :mod:`jaxcf.core.targets`:

* class ``t``: probability ``softmax(logits)[t]``, reached at ``>= threshold``;
* soft ``q``: total variation ``0.5 * sum |softmax(logits) - q|``, reached at ``<= tolerance``;
* regression ``v``: ``|output - v|``, reached at ``<= tolerance``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcf.core import as_pure


def _kind(t) -> str:
    t = np.asarray(t)
    if np.issubdtype(t.dtype, np.integer):
        return "class"
    return "soft" if t.ndim == 1 and t.size > 1 else "regression"


def score(outputs: np.ndarray, t, threshold: float, tolerance: float) -> tuple[float, bool]:
    """Score and success of one query's outputs ``[C]`` for its target."""
    outputs = np.asarray(outputs, np.float64)
    kind = _kind(t)
    if kind == "regression":
        s = abs(outputs[0] - float(t))
        return s, s <= tolerance
    p = np.exp(outputs - outputs.max())
    p /= p.sum()
    if kind == "class":
        return p[int(t)], p[int(t)] >= threshold
    s = 0.5 * np.abs(p - np.asarray(t, np.float64)).sum()
    return s, s <= tolerance


def _loss(logits, t):
    """Target loss of one query (cross-entropy / squared error), in JAX for its gradient."""
    if t.ndim == 0 and jnp.issubdtype(t.dtype, jnp.integer):
        return -jax.nn.log_softmax(logits)[t]
    if t.ndim == 1:
        return -jnp.sum(t * jax.nn.log_softmax(logits))
    return (logits[0] - t) ** 2


_CACHE: dict = {}


def _fns_for(classifier, density=None):
    """Jitted single-query outputs, target-loss gradient and density gradient, built once per
    (classifier, density) object pair."""
    key = (id(classifier), id(density))
    if key in _CACHE:
        return _CACHE[key][2]
    clf = as_pure(classifier, need_features=density is not None)

    def outputs(x):
        return clf.logits(x[None])[0]

    def loss(x, t):
        return _loss(clf.logits(x[None])[0].astype(jnp.float32), t)

    def log_dens(x, t):
        return density.log_prob(clf.features(x[None]))[0, t]

    fns = (
        jax.jit(outputs),
        jax.jit(jax.value_and_grad(loss)),
        None if density is None else jax.jit(jax.value_and_grad(log_dens)),
    )
    _CACHE[key] = (classifier, density, fns)  # holding the objects keeps their ids unique
    return fns


def _search_loop(classifier, x, t, cfg, update, density=None):
    """Shared host loop: read the score before each update, stop at success or max_iter."""
    outputs, loss_grad, dens_grad = _fns_for(classifier, density)
    x = np.array(x, np.float32)
    tol = getattr(cfg, "tolerance", 0.1)
    state: dict = {}
    n = 0
    while True:
        s, ok = score(outputs(jnp.asarray(x)), t, cfg.threshold, tol)
        if ok:
            return x, True, n, s
        if n == cfg.max_iter:
            return x, False, n, s
        x = update(x, state, loss_grad, dens_grad)
        n += 1


def reference_deduce(classifier, density, x, t, cfg):
    """DeDUCE for one query (class target)."""

    def update(x, st, loss_grad, dens_grad):
        st.setdefault("changes", np.zeros(x.size, np.int64))
        st.setdefault("mom", np.zeros(x.size, np.float32))
        ce, g_ce = loss_grad(jnp.asarray(x), t)
        ld, g_ld = dens_grad(jnp.asarray(x), t)
        g = -cfg.density_weight * np.asarray(g_ld).ravel() / max(abs(float(ld)), 1e-12)
        g = g + cfg.ce_weight * np.asarray(g_ce).ravel() / max(abs(float(ce)), 1e-12)
        g[st["changes"] >= cfg.max_changes] = 0.0
        chosen = np.argsort(-np.abs(g), kind="stable")[: cfg.pixels]
        g = g + cfg.momentum * st["mom"]
        flat = x.ravel()
        flat[chosen] = np.clip(flat[chosen] - cfg.step * np.sign(g[chosen]), 0.0, 1.0)
        st["changes"][chosen] += 1
        st["mom"] = g
        return x

    return _search_loop(classifier, x, np.int32(t), cfg, update, density)


def reference_jsma(classifier, x, t, cfg):
    """JSMA for one query (any target kind)."""

    def update(x, st, loss_grad, _):
        frozen = st.setdefault("frozen", np.zeros(x.size, bool))
        _, g = loss_grad(jnp.asarray(x), jnp.asarray(t))
        g = np.array(g).ravel()
        g[frozen] = 0.0
        chosen = np.argsort(-np.abs(g), kind="stable")[: cfg.pixels]
        flat = x.ravel()
        flat[chosen] = np.clip(flat[chosen] - cfg.step * np.sign(g[chosen]), 0.0, 1.0)
        frozen[chosen] |= (flat[chosen] == 0.0) | (flat[chosen] == 1.0)
        return x

    return _search_loop(classifier, x, t, cfg, update)


def _wachter_optimizer(cfg):
    return (
        optax.adam(cfg.learning_rate) if cfg.optimizer == "adam" else optax.sgd(cfg.learning_rate)
    )


def reference_wachter(classifier, x, t, cfg):
    """Wachter's search for one query, with its own optax optimiser (any target kind)."""
    tx = _wachter_optimizer(cfg)
    x0 = np.array(x, np.float32)

    def update(x, st, loss_grad, _):
        opt = st.setdefault("opt", tx.init(jnp.asarray(x)))
        _, g = loss_grad(jnp.asarray(x), jnp.asarray(t))
        g = g + cfg.l1_weight * jnp.sign(jnp.asarray(x) - x0)
        updates, st["opt"] = tx.update(g, opt)
        return np.asarray(jnp.clip(jnp.asarray(x) + updates, 0.0, 1.0))

    return _search_loop(classifier, x, t, cfg, update)


def reference_wachter_rounds(classifier, x, t, cfg):
    """Wachter's search over the L1 weight for one query (``cfg.rounds > 0``), as a flat loop:
    check the iterate, keep it if it is the closest valid one, end the round (bisecting the
    weight, fresh optimiser) after ``max_iter`` checks or ``patience`` valid or invalid ones in a
    row, and step unless the last round just ended."""
    tx = _wachter_optimizer(cfg)
    outputs, loss_grad, _ = _fns_for(classifier)
    x0 = np.array(x, np.float32)
    x = x0.copy()
    opt = tx.init(jnp.asarray(x))
    # The weight and its bounds in float32, as the batched search keeps them.
    lam, lower, upper = np.float32(cfg.l1_weight), np.float32(0.0), np.float32(np.inf)
    best, best_dist, best_score = None, np.inf, None
    rnd = checks = found = run_valid = run_invalid = n = 0
    while True:
        s, ok = score(outputs(jnp.asarray(x)), t, cfg.threshold, cfg.tolerance)
        if rnd == cfg.rounds:
            break
        dist = float(np.abs(x - x0).astype(np.float32).sum(dtype=np.float32))
        if ok:
            found, run_valid, run_invalid = found + 1, run_valid + 1, 0
            if dist < best_dist:
                best, best_dist, best_score = x.copy(), dist, s
        else:
            run_valid, run_invalid = 0, run_invalid + 1
        checks += 1
        if checks == cfg.max_iter or cfg.patience in (run_valid, run_invalid):
            if found >= cfg.min_found:
                lower = max(lower, lam)
                lam = (lower + upper) / 2 if np.isfinite(upper) else lam * np.float32(10)
            else:
                upper = min(upper, lam)
                lam = (lower + upper) / 2 if lower > 0 else lam / np.float32(10)
            rnd += 1
            checks = found = run_valid = run_invalid = 0
            opt = tx.init(jnp.asarray(x))
        if rnd < cfg.rounds:
            _, g = loss_grad(jnp.asarray(x), jnp.asarray(t))
            g = g + lam * jnp.sign(jnp.asarray(x) - x0)
            updates, opt = tx.update(g, opt)
            x = np.asarray(jnp.clip(jnp.asarray(x) + updates, 0.0, 1.0))
        n += 1
    if best is not None:
        return best, True, n, best_score
    return x, False, n, s


def reference_fgsm(classifier, x, t, cfg):
    """Targeted FGSM for one query, retried at each larger eps of the schedule until reached.

    Returns ``(x_cf, success, n_iter, score, attempt)``."""
    outputs, loss_grad, _ = _fns_for(classifier)
    _, g = loss_grad(jnp.asarray(x), jnp.asarray(t))
    schedule = (cfg.eps, *cfg.schedule)
    attempt = 0
    while True:
        x_cf = np.clip(np.asarray(x) - schedule[attempt] * np.sign(np.asarray(g)), 0.0, 1.0)
        s, ok = score(outputs(jnp.asarray(x_cf)), t, cfg.threshold, cfg.tolerance)
        if ok or attempt == len(schedule) - 1:
            return x_cf, ok, 1, s, attempt
        attempt += 1
