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


_CFPROTO_FNS: dict = {}


def _cfproto_fns(search):
    """One query's smooth CFProto objective, its gradient and the encoder, jitted once per
    (classifier, bank, autoencoder, config): the hinge, written here on the classifier's
    outputs of a batch of one."""
    cfg = search.config
    key = (id(search.classifier), id(search.bank), id(search.autoencoder), cfg)
    if key in _CFPROTO_FNS:
        return _CFPROTO_FNS[key][1]
    clf, ae, bank = search.classifier, search.autoencoder, search.bank
    enc = None if bank is None else bank.autoencoder

    def code(x):  # [...] -> [d]
        return x.reshape(-1) if enc is None else enc.encode(x[None])[0]

    def margin(logits, t):  # f_t - max_{i != t} f_i
        f = jax.nn.softmax(logits) if cfg.margin == "probabilities" else logits
        return f[t] - jnp.max(f.at[t].set(-jnp.inf))

    def smooth(y, x0, proto, t, c):
        loss = c * jnp.maximum(0.0, cfg.kappa - margin(clf.logits(y[None])[0], t))
        loss = loss + jnp.sum((y - x0) ** 2)
        if cfg.gamma > 0:
            loss = loss + cfg.gamma * jnp.sum((y - ae.decode(ae.encode(y[None]))[0]) ** 2)
        if cfg.theta > 0:
            loss = loss + cfg.theta * jnp.sum((code(y) - proto) ** 2)
        return loss

    fns = (jax.jit(jax.grad(smooth)), jax.jit(code), jax.jit(margin))
    _CFPROTO_FNS[key] = (search, fns)  # kept alive: the ids are not reused
    return fns


def _prototype(search, x0, t) -> np.ndarray:
    """The query's prototype of class ``t``: the mean code of its ``k`` nearest training
    instances of that class (float64 distances), or the class's mean code."""
    _, code, _ = _cfproto_fns(search)
    bank = search.bank
    codes = np.asarray(bank.codes, np.float64)[np.asarray(bank.labels) == t]
    k = search.config.k
    if k is None and bank.autoencoder is None:
        k = 1  # input space: the nearest instance
    if k is None:
        return codes.mean(axis=0).astype(np.float32)
    q = np.asarray(code(jnp.asarray(x0)), np.float64)
    nearest = np.argsort(((codes - q) ** 2).sum(axis=1), kind="stable")[:k]
    return codes[nearest].mean(axis=0).astype(np.float32)


def decode_encode(transform):
    """One encoded row ``[D]`` to the encoding of the row it decodes to, in NumPy (the
    reference of ``transform.projection()``)."""
    return lambda row: transform.encode(transform.decode(row[None]))[0]


def reference_cfproto(search, x, t, project=None):
    """CFProto for one query: ``c_steps`` rounds of FISTA from the query (gradient step with
    decaying rate at the momentum point, soft-thresholding towards the query, momentum), the
    closest candidate (elastic-net distance) kept, ``c`` bisected between rounds; a round ends
    after ``max_iter`` steps or ``patience`` steps without a closer candidate once it has one.
    With ``project`` (one input to a valid one), every check is made on the projected iterate.
    Float32 NumPy arithmetic, JAX only for the gradient and the encoder of one query."""
    cfg = search.config
    grad, _, margin = _cfproto_fns(search)
    outputs, _, _ = _fns_for(search.classifier)
    f32 = np.float32
    box = search.domain
    lo, hi = (-np.inf, np.inf) if box is None else (f32(box[0]), f32(box[1]))
    beta = f32(cfg.beta)
    x0 = np.array(x, np.float32)
    t = int(t)
    proto = _prototype(search, x0, t) if cfg.theta > 0 else np.zeros(1, np.float32)
    c, lower, upper = f32(cfg.c_init), f32(0.0), f32(np.inf)
    best, best_dist, best_score = None, np.inf, None
    n = 0
    for r in range(cfg.c_steps):
        xk, yk = x0.copy(), x0.copy()
        found, round_dist, stale = False, np.inf, 0
        for i in range(cfg.max_iter):
            g = np.asarray(grad(yk, x0, proto, t, c))
            g = np.clip(g, -cfg.clip, cfg.clip).astype(np.float32)
            lr = f32(cfg.learning_rate) * np.sqrt(max(f32(1.0) - f32(i) / f32(cfg.max_iter), 0))
            z = yk - f32(lr) * g
            d = z - x0
            xn = np.where(
                d > beta,
                np.minimum(z - beta, hi),
                np.where(d < -beta, np.maximum(z + beta, lo), x0),
            ).astype(np.float32)
            zt = f32(i + 1) / f32(i + 4)
            yk = np.clip(xn + zt * (xn - xk), lo, hi).astype(np.float32)
            xk = xn
            n += 1
            checked = xk if project is None else np.asarray(project(xk), np.float32)
            logits = outputs(jnp.asarray(checked))
            s, ok = score(logits, t, cfg.threshold, 0.1)
            candidate = ok and float(margin(logits, t)) >= cfg.kappa
            d = (checked - x0).ravel()
            dist = float(np.sum(d * d, dtype=np.float32) + beta * np.sum(np.abs(d)))
            if candidate and dist < best_dist:
                best, best_dist, best_score = checked.copy(), dist, s
            if candidate and dist < round_dist:
                round_dist, stale = dist, 0
            else:
                stale += 1
            found = found or candidate
            if found and stale >= cfg.patience:
                break
        if found:
            upper = min(upper, c)
        else:
            lower = max(lower, c)
        if r < cfg.c_steps - 1:
            c = f32((lower + upper) / 2) if np.isfinite(upper) else f32(c * 10)
    if best is not None:
        return best, True, n, best_score
    return xk, False, n, s
