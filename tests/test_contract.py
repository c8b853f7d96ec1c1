"""One contract table: every method (and a user's own explainer) through the same tests.

For each variant of the table:

* batched equals a plain per-query reference loop (:mod:`tests.references`, or written below
  for the user's explainer);
* sharded over 4 fake CPU devices equals one device; chunk size and padding are invisible;
* a second run with the same shapes compiles nothing;
* bad input raises a clear error before anything is compiled or written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from jaxcf import experiment, report, runner
from jaxcf.core import CFResult, FunctionClassifier, Results, Retry, as_pure, checks, targets
from jaxcf.data import ADULT_CONSTRAINTS, adult_transform, load_dataset
from jaxcf.evaluation import metrics
from jaxcf.methods import (
    AIPConfig,
    AIPRandomConfig,
    CFProtoConfig,
    DeDUCEConfig,
    DiffExplainerConfig,
    FGSMConfig,
    GeneratorConfig,
    GuidedDiffusionConfig,
    JSMAConfig,
    REVISEConfig,
    SearchExplainer,
    WachterConfig,
    XGEMsConfig,
    make,
    method_names,
    prototype_bank,
    solve,
    wachter,
)
from jaxcf.methods._search import solve_jit
from jaxcf.models import generators
from tests import references
from tests.conftest import (
    FAKE_DEVICES,
    jolt,
    mesh,
    random_agent,
    tiny_attribute_model,
    tiny_autoencoder,
    tiny_diffusion,
    tiny_vae,
)

N = 10  # queries: never a multiple of the chunk size below, so chunks are padded
# Success criteria of the untrained generators, set so that some queries succeed and some fail.
THRESHOLDS = {"series": 0.42, "autoencoder": 0.3, "tabular": 0.46}


# ----------------------------------------------------------------------------- a user's explainer


class NoisyDescent(struct.PyTreeNode):
    """What a user writes: random start around the query, one normalised gradient step."""

    classifier: Any
    sigma: float = struct.field(pytree_node=False, default=0.05)
    step: float = struct.field(pytree_node=False, default=2.0)

    def check(self, x, target):  # the library's boundary checks, any target kind, no box
        return checks.check_inputs(self.classifier, x, target, domain=None, kinds=targets.KINDS)

    def __call__(self, x, target, key):
        noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(key)
        start = x + self.sigma * noise

        def loss(z):
            return jnp.sum(targets.target_loss(self.classifier.logits(z), target))

        g = jax.grad(loss)(start)
        norm = jnp.sqrt(jnp.sum(g * g, axis=(1, 2, 3), keepdims=True)) + 1e-12
        x_cf = start - self.step * g / norm
        score, ok = targets.score_outputs(
            self.classifier.logits(x_cf), target, threshold=0.5, tolerance=0.2
        )
        return CFResult(x_cf, ok, jnp.ones(x.shape[0], jnp.int32), score, {"noise": noise})


def reference_noisy(explainer, x, t, key):
    """NoisyDescent for one query with its key, written as a plain loop body."""
    outputs, loss_grad, _ = references._fns_for(explainer.classifier)
    start = np.asarray(x) + explainer.sigma * np.asarray(jax.random.normal(key, x.shape))
    _, g = loss_grad(jnp.asarray(start, jnp.float32), jnp.asarray(t))
    g = np.asarray(g, np.float64)
    x_cf = start - explainer.step * g / (np.sqrt((g * g).sum()) + 1e-12)
    s, ok = references.score(outputs(jnp.asarray(x_cf, jnp.float32)), t, 0.5, 0.2)
    return x_cf, ok, 1, s


# ----------------------------------------------------------------------------- a generator


def _untrained_generator(config=None, seed: int = 1, scale: float = 0.1):
    """A small generator (an image one unless ``config`` says otherwise) whose every weight is
    jolted away from its initialisation (the zero-initialised output layer would otherwise
    return the query unchanged), so that its counterfactuals move the classifier: some reach
    their targets, some do not."""
    config = config or generators.ImageGeneratorConfig(width=8, blocks=1, groups=4)
    return jolt(generators.build(config, seed=0), scale=scale, seed=seed)


def reference_generator(e, x, t, key):
    """One query through the generator on its own (a batch of one, eager), scored by hand."""
    outputs, _, _ = references._fns_for(e.classifier)
    logits = np.asarray(outputs(jnp.asarray(x, jnp.float32)), np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    t = np.asarray(t)
    y_t = np.eye(len(p))[int(t)] if t.ndim == 0 else t
    kwargs = {} if e.fixed_mask is None else {"fixed": e.fixed_mask[None]}
    x_cf = e.generator.generate(
        jnp.asarray(x[None], jnp.float32),
        jnp.asarray(p[None], jnp.float32),
        jnp.asarray(y_t[None], jnp.float32),
        key[None],
        **kwargs,
    )[0]
    cfg = e.config
    s, ok = references.score(outputs(x_cf), t, cfg.threshold, cfg.tolerance)
    return np.asarray(x_cf), ok, 1, s


# ----------------------------------------------------------------------------- guided diffusion


def reference_guided(e, x, t, key):
    """One query through the guided sampler, step by step in plain Python: the schedule
    arithmetic in float64 NumPy, JAX only for the denoiser, the classifier and gradients on a
    batch of one."""
    return _reference_guided_once(e, x, t, key)


_GUIDED_FNS: dict = {}


def _guided_fns(g):
    """The reference's network calls for one explainer, jitted once for all its queries (only
    for speed: eager UNet calls would dominate the test): the denoiser, and the gradients of
    [target loss, distance] through the one-step clean estimate or at a clean image."""
    cfg, model, p = g.config, g.model, g.model.space.pad
    key = (id(model), id(g.classifier), cfg.distance)  # rows on the same models share them
    if key in _GUIDED_FNS:
        return _GUIDED_FNS[key][1]

    def losses(x0, y, tgt):  # [1, 32, 32, 1] -> [target loss, distance]
        img = jnp.clip((x0[:, p:-p, p:-p, :] + 1.0) / 2.0, 0.0, 1.0)
        d = x0[0] - y
        dist = jnp.sum(jnp.abs(d)) if cfg.distance == "l1" else jnp.sum(d * d)
        return jnp.stack([targets.target_loss(g.classifier.logits(img), tgt)[0], dist])

    @jax.jit
    def through_denoiser(xb, ti, a, y, tgt):  # d losses(x0_hat(xb)) / d xb: [2, 1, 32, 32, 1]
        def of(xb):
            e = model.denoise(xb, ti)
            return losses(jnp.clip((xb - jnp.sqrt(1 - a) * e) / jnp.sqrt(a), -1.0, 1.0), y, tgt)

        return jax.jacrev(of)(xb)

    fns = (jax.jit(model.denoise), through_denoiser, jax.jit(jax.jacrev(losses)))
    _GUIDED_FNS[key] = ((model, g.classifier), fns)  # kept alive: their ids are not reused
    return fns


def _reference_guided_once(g, x, t, key):
    cfg, st, model = g.config, g.steps, g.model
    abar = np.asarray(st.alphas_cumprod, np.float64)
    prev = np.asarray(st.alphas_cumprod_prev, np.float64)
    beta = np.asarray(st.betas, np.float64)
    steps = np.asarray(st.timesteps)
    p = model.space.pad
    y = np.pad(2.0 * np.asarray(x, np.float64) - 1.0, ((p, p), (p, p), (0, 0)), constant_values=-1)

    denoise, grads_through_denoiser, grads_at = _guided_fns(g)
    y32, tgt = jnp.asarray(y, jnp.float32), jnp.asarray(t)[None]

    def eps_at(xt, i):
        out = denoise(jnp.asarray(xt, jnp.float32)[None], jnp.asarray([steps[i]], jnp.int32))
        return np.asarray(out[0], np.float64)

    def x0_of(xt, eps, i):
        return np.clip((xt - np.sqrt(1 - abar[i]) * eps) / np.sqrt(abar[i]), -1, 1)

    def ddim(xt, i, eps):  # eta 0, clipped: the rollout's step
        x0 = x0_of(xt, eps, i)
        eps = (xt - np.sqrt(abar[i]) * x0) / np.sqrt(1 - abar[i])
        return np.sqrt(prev[i]) * x0 + np.sqrt(1 - prev[i]) * eps

    k0 = jax.random.fold_in(key, 2**31 - 2)
    xt = np.sqrt(abar[g.first]) * y + np.sqrt(1 - abar[g.first]) * np.asarray(
        jax.random.normal(k0, y.shape), np.float64
    )
    for i in range(g.first, -1, -1):
        eps = eps_at(xt, i)
        if cfg.clean_estimate == "one_step":
            ti = jnp.asarray([steps[i]], jnp.int32)
            xb = jnp.asarray(xt, jnp.float32)[None]
            both = grads_through_denoiser(xb, ti, abar[i], y32, tgt)
        else:  # unguided DDIM rollout to a clean image; the gradient is taken there
            xr = ddim(xt, i, eps)
            for j in range(i - 1, -1, -1):
                xr = ddim(xr, j, eps_at(xr, j))
            both = grads_at(jnp.asarray(xr, jnp.float32)[None], y32, tgt)
        g_cls, g_dist = (np.asarray(both[k, 0], np.float64) for k in (0, 1))
        if cfg.balance:
            n = np.linalg.norm(eps)
            g_cls = g_cls * n / (np.linalg.norm(g_cls) + 1e-12)
            g_dist = g_dist * n / (np.linalg.norm(g_dist) + 1e-12)
        eps = eps + np.sqrt(1 - abar[i]) * (
            cfg.guidance_scale * g_cls + cfg.distance_weight * g_dist
        )
        x0 = x0_of(xt, eps, i)
        z = np.asarray(jax.random.normal(jax.random.fold_in(key, i), y.shape), np.float64)
        if cfg.method == "ddpm":
            mean = (
                beta[i] * np.sqrt(prev[i]) / (1 - abar[i]) * x0
                + (1 - prev[i]) * np.sqrt(1 - beta[i]) / (1 - abar[i]) * xt
            )
            xt = mean + np.sqrt(beta[i] * (1 - prev[i]) / (1 - abar[i])) * z
        else:
            eps = (xt - np.sqrt(abar[i]) * x0) / np.sqrt(1 - abar[i])
            sigma = cfg.eta * np.sqrt((1 - prev[i]) / (1 - abar[i]) * (1 - abar[i] / prev[i]))
            xt = np.sqrt(prev[i]) * x0 + np.sqrt(max(1 - prev[i] - sigma**2, 0.0)) * eps + sigma * z
    x_cf = np.clip((xt[p:-p, p:-p, :] + 1.0) / 2.0, 0.0, 1.0)
    outputs, _, _ = references._fns_for(g.classifier)
    s, ok = references.score(
        outputs(jnp.asarray(x_cf, jnp.float32)), t, cfg.threshold, cfg.tolerance
    )
    return x_cf, ok, g.denoiser_calls, s


# ----------------------------------------------------------------------------- DiffExplainer


# The explainer's own inversion and decoding of one query, jitted (for speed only: eager scans
# over a UNet recompile on every call); the explainer is an argument, so all queries share them.
_encode = jax.jit(lambda e, x: e.encode(x))
_decode = jax.jit(lambda e, z, x_T: e.decode(z, x_T))


def reference_diffexplainer(e, x, t, key):
    """One query on its own: its codes, the agent's direction, then the sweep decoded one value
    at a time until the teacher agrees (the explainer decodes every value for the whole batch)."""
    xb, tb = jnp.asarray(x, jnp.float32)[None], jnp.asarray([t])
    z, x_T = _encode(e, xb)
    u = e.direction(z, tb)
    norm = float(np.linalg.norm(np.asarray(z)))
    outputs, _, _ = references._fns_for(e.teacher)
    for n, alpha in enumerate(e.config.alphas, start=1):
        img = np.asarray(_decode(e, z + alpha * norm * u, x_T))[0]
        s, ok = references.score(outputs(jnp.asarray(img)), t, e.config.threshold, 0.1)
        if ok or n == len(e.config.alphas):
            return img, ok, n, s


# ----------------------------------------------------------------------------- latent searches


_LATENT_FNS: dict = {}


def _latent_fns(model):
    """The reference's calls of a VAE or attribute model on one query, jitted once per model
    (for speed only): encode, attributes (attribute models), decode, and the decoder's
    vector-Jacobian product (the gradient through the decoder of an image-space cotangent)."""
    if id(model) in _LATENT_FNS:
        return _LATENT_FNS[id(model)][1]
    if hasattr(model, "attributes"):

        def dec(z, a):
            return model.decode(z[None], a[None])[0]

        attrs = jax.jit(lambda x: model.attributes(x[None])[0])
    else:

        def dec(z):
            return model.decode(z[None])[0]

        attrs = None

    def pull(cot, *latent):
        return jax.vjp(dec, *latent)[1](cot)

    fns = (jax.jit(lambda x: model.encode(x[None])[0]), attrs, jax.jit(dec), jax.jit(pull))
    _LATENT_FNS[id(model)] = (model, fns)  # kept alive: its id is not reused
    return fns


def _unit(d: np.ndarray) -> np.ndarray:
    """The gradient of ||d||_2: d / ||d||, 0 at d = 0."""
    n = np.sqrt(np.sum(np.asarray(d, np.float64) ** 2))
    return np.zeros_like(d) if n == 0 else d / n


def reference_latent(e, x, t):
    """REVISE or xGEMs for one query: start at the encoder's code, then plain gradient steps
    or Adam (optax, one query) on the code, the gradient assembled by hand from the target
    loss's image gradient pulled back through the decoder, plus the distance's."""
    s = e.search
    cfg = s.config
    encode, _, decode, pull = _latent_fns(s.vae)
    outputs, loss_grad, _ = references._fns_for(s.classifier)
    lr = cfg.learning_rate
    tx = optax.adam(lr) if cfg.optimizer == "adam" else optax.sgd(lr)
    x32 = jnp.asarray(x, jnp.float32)
    z0 = encode(x32)
    z, opt, n = z0, tx.init(z0), 0
    while True:
        img = decode(z)
        sc, ok = references.score(outputs(img), t, cfg.threshold, cfg.tolerance)
        if ok or n == cfg.max_iter:
            return np.asarray(img), ok, n, sc
        _, g_img = loss_grad(img, jnp.asarray(t))
        if isinstance(cfg, REVISEConfig):  # L1 in input space: sign(dec(z) - x)
            (g,) = pull(g_img + cfg.distance_weight * jnp.sign(img - x32), z)
        else:  # L2 in latent space
            (g,) = pull(g_img, z)
            g = g + cfg.distance_weight * jnp.asarray(_unit(np.asarray(z - z0)), jnp.float32)
        updates, opt = tx.update(g, opt)
        z = z + updates
        n += 1


def _aip_start(s, x):
    encode, attributes, _, _ = _latent_fns(s.model)
    x32 = jnp.asarray(x, jnp.float32)
    return np.asarray(encode(x32)), np.clip(np.asarray(attributes(x32)), 0.0, 1.0)


def reference_aip(e, x, t):
    """AIP for one query: plain gradient steps with step sizes mu * beta^n (code) and
    gamma * beta^n (attributes, clipped to [0, 1])."""
    s = e.search
    cfg = s.config
    _, _, decode, pull = _latent_fns(s.model)
    outputs, loss_grad, _ = references._fns_for(s.classifier)
    z0, a0 = _aip_start(s, x)
    z, a, n = z0, a0, 0
    while True:
        img = decode(jnp.asarray(z), jnp.asarray(a))
        sc, ok = references.score(outputs(img), t, cfg.threshold, cfg.tolerance)
        if ok or n == cfg.max_iter:
            return np.asarray(img), ok, n, sc
        _, g_img = loss_grad(img, jnp.asarray(t))
        gz, ga = (np.asarray(g) for g in pull(g_img, jnp.asarray(z), jnp.asarray(a)))
        gz = gz + cfg.alpha * _unit(z - z0)
        ga = ga + cfg.alpha * _unit(a - a0)
        step = cfg.step_scale * cfg.beta**n
        z = (z - cfg.mu * step * gz).astype(np.float32)
        a = np.clip(a - cfg.gamma * step * ga, 0.0, 1.0).astype(np.float32)
        n += 1


def reference_aip_retry(e, x, t):
    """AIP with a schedule for one query: attempts at each step scale in turn, from the start;
    the first that reaches the target is the result (else the last)."""
    for i in range(len(e.schedule)):
        result = reference_aip(e.attempt(i), x, t)
        if result[1]:
            break
    return result


def _np_target_loss(logits, t) -> float:
    """Cross-entropy (class, soft) or squared error (regression) of one query, in float64."""
    logits = np.asarray(logits, np.float64)
    if references._kind(t) == "regression":
        return float((logits[0] - float(t)) ** 2)
    logp = logits - logits.max()
    logp = logp - np.log(np.exp(logp).sum())
    if references._kind(t) == "class":
        return float(-logp[int(t)])
    return float(-(np.asarray(t, np.float64) * logp).sum())


def reference_aip_random(e, x, t, key):
    """AIP_R for one query: a Gaussian proposal per iteration from the query's key (split
    into the next key and the draw), with lengths mu * beta^n and gamma * beta^n, kept only
    if it lowers the objective."""
    s = e.search
    cfg = s.config
    _, _, decode, _ = _latent_fns(s.model)
    outputs, _, _ = references._fns_for(s.classifier)
    z0, a0 = _aip_start(s, x)
    k, m = len(z0), len(a0)

    def objective(z, a):
        logits = np.asarray(outputs(decode(jnp.asarray(z), jnp.asarray(a))))
        dist = np.linalg.norm(np.float64(z - z0)) + np.linalg.norm(np.float64(a - a0))
        return _np_target_loss(logits, t) + cfg.alpha * dist, logits

    z, a, n = z0, a0, 0
    loss, logits = objective(z, a)
    while True:
        sc, ok = references.score(logits, t, cfg.threshold, cfg.tolerance)
        if ok or n == cfg.max_iter:
            return np.asarray(decode(jnp.asarray(z), jnp.asarray(a))), ok, n, sc
        key, sub = jax.random.split(key)
        eps = np.asarray(jax.random.normal(sub, (k + m,)), np.float64)
        step = cfg.beta**n
        zp = (z + cfg.mu * step / np.sqrt(k) * eps[:k]).astype(np.float32)
        ap = np.clip(a + cfg.gamma * step / np.sqrt(m) * eps[k:], 0.0, 1.0).astype(np.float32)
        loss_p, logits_p = objective(zp, ap)
        if loss_p < loss:
            z, a, loss, logits = zp, ap, loss_p, logits_p
        n += 1


# ----------------------------------------------------------------------------- the table


def _first_logit(params, x):
    return params.logits(x)[:, :1]  # a regressor: the model's first logit


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # target kind
    build: Callable  # (model, density) -> explainer
    reference: Callable  # (explainer, model, density, x_i, t_i, key_i) -> (x_cf, ok, n, score)
    atol: float = 0.0  # on x_cf (continuous methods agree to float rounding)
    num_cfs: int = 1
    promotion: str = "strict"  # "standard" where optax's Adam runs inside
    criterion: float | None = None  # the threshold or tolerance success is decided at
    problem: str = "mnist"  # the classifier and queries: mnist, ecg or adult (fixtures below)
    # The registered method whose explainer ``build`` makes (``make(method, ...)``); None for a
    # user's own explainer. Every registered method needs a row (test_every_method_has_a_row).
    method: str | None = None


def _regressor(model):
    return FunctionClassifier(_first_logit, as_pure(model), input_shape=(28, 28, 1), domain=(0, 1))


VARIANTS = [
    Variant(
        "deduce",
        "class",
        lambda m, d: make("deduce", DeDUCEConfig(max_iter=60), classifier=m, density=d),
        lambda e, m, d, x, t, k: references.reference_deduce(m, d, x, t, e.config),
        method="deduce",
    ),
    Variant(
        "jsma-soft",
        "soft",
        lambda m, d: make("jsma", JSMAConfig(max_iter=60, tolerance=0.3), classifier=m),
        lambda e, m, d, x, t, k: references.reference_jsma(m, x, t, e.config),
        method="jsma",
    ),
    Variant(
        "wachter-regression",
        "regression",
        lambda m, d: make(
            "wachter",
            WachterConfig(max_iter=30, tolerance=0.5, l1_weight=0.01),
            classifier=_regressor(m),
        ),
        lambda e, m, d, x, t, k: references.reference_wachter(_regressor(m), x, t, e.config),
        atol=2e-5,
        promotion="standard",
        criterion=0.5,
        method="wachter",
    ),
    Variant(
        "wachter-rounds",
        "class",
        lambda m, d: make(
            "wachter",
            WachterConfig(learning_rate=0.01, max_iter=12, rounds=3, patience=4, min_found=2),
            classifier=m,
        ),
        lambda e, m, d, x, t, k: references.reference_wachter_rounds(m, x, t, e.config),
        atol=2e-5,
        promotion="standard",
        criterion=0.5,
        method="wachter",
    ),
    Variant(
        "fgsm-retry",
        "class",
        lambda m, d: make("fgsm", FGSMConfig(eps=0.05, schedule=(0.15, 0.3)), classifier=m),
        lambda e, m, d, x, t, k: references.reference_fgsm(m, x, t, e.explainer.config)[:4],
        method="fgsm",
    ),
    Variant(
        "user-class",
        "class",
        lambda m, d: NoisyDescent(as_pure(m)),
        lambda e, m, d, x, t, k: reference_noisy(e, x, t, k),
        atol=1e-5,
        num_cfs=3,
        criterion=0.5,
    ),
    Variant(
        "user-soft",
        "soft",
        lambda m, d: NoisyDescent(as_pure(m)),
        lambda e, m, d, x, t, k: reference_noisy(e, x, t, k),
        atol=1e-5,
        num_cfs=3,
        criterion=0.2,
    ),
    Variant(
        "user-regression",
        "regression",
        lambda m, d: NoisyDescent(_regressor(m)),
        lambda e, m, d, x, t, k: reference_noisy(e, x, t, k),
        atol=1e-5,
        num_cfs=3,
        criterion=0.2,
    ),
]
# Every generator family, untrained but jolted, on the classifier and queries of its modality.
_SERIES = dict(input_shape=(140, 1), cond_dim=2, hidden=8)
for _name, _kind, _cfg, _problem, _gen in (
    ("image-class", "class", GeneratorConfig(threshold=0.12), "mnist", None),
    ("image-soft", "soft", GeneratorConfig(tolerance=0.6), "mnist", None),
    (
        "series-class",
        "class",
        GeneratorConfig(threshold=THRESHOLDS["series"]),
        "ecg",
        lambda: generators.SeriesGeneratorConfig(**_SERIES),
    ),
    (
        "autoencoder-soft",
        "soft",
        GeneratorConfig(tolerance=THRESHOLDS["autoencoder"]),
        "ecg",
        lambda: generators.SeriesAutoencoderConfig(**_SERIES, latent=4),
    ),
    (
        "tabular-class",
        "class",
        GeneratorConfig(threshold=THRESHOLDS["tabular"], fixed=("Age",)),
        "adult",
        lambda: generators.TabularGeneratorConfig(
            transform=adult_transform().to_dict(),
            constraints=ADULT_CONSTRAINTS.to_dict(),
            cond_dim=2,
            width=16,
            blocks=1,
        ),
    ),
):
    VARIANTS.append(
        Variant(
            f"generator-{_name}",
            _kind,
            lambda m, d, cfg=_cfg, gen=_gen: make(
                "generator",
                cfg,
                classifier=m,
                generator=_untrained_generator(gen and gen()),
            ),
            lambda e, m, d, x, t, k: reference_generator(e, x, t, k),
            atol=1e-5,
            # The autoencoder variant has no noise input: one counterfactual per query.
            num_cfs=1 if _name.startswith("autoencoder") else 2,
            criterion=_cfg.threshold if _kind == "class" else _cfg.tolerance,
            problem=_problem,
            method="generator",
        )
    )
# The guided diffusion sampler on an untrained (jolted) small UNet: few steps, so the test is
# about the arithmetic, not the pictures.
for _name, _kind, _cfg in (
    (
        "guided-one-step-class",
        "class",
        # No schedule: a Retry of the sampler compiles another UNet program per attempt, and
        # the rows fgsm-retry and aip-retry already run Retry through every test here.
        GuidedDiffusionConfig(num_steps=12, start=0.3, guidance_scale=1.0),
    ),
    (
        "guided-rollout-soft",
        "soft",
        GuidedDiffusionConfig(
            num_steps=12,
            start=0.3,
            method="ddim",
            eta=0.5,
            clean_estimate="rollout",
            distance="l2",
            balance=True,
            guidance_scale=0.5,
            distance_weight=0.1,
            tolerance=0.5,
        ),
    ),
):
    VARIANTS.append(
        Variant(
            _name,
            _kind,
            lambda m, d, cfg=_cfg: make(
                "guided_diffusion", cfg, classifier=m, diffusion=tiny_diffusion()
            ),
            lambda e, m, d, x, t, k: reference_guided(e, x, t, k),
            atol=2e-4,
            num_cfs=2,
            criterion=_cfg.threshold if _kind == "class" else _cfg.tolerance,
            method="guided_diffusion",
        )
    )
VARIANTS.append(
    Variant(
        "diffexplainer-class",
        "class",
        lambda m, d: make(
            "diffexplainer",
            DiffExplainerConfig(alphas=(0.5, 1.0, 2.0), num_steps=8),
            classifier=m,
            agent=random_agent(m),
            diffusion=tiny_autoencoder(),
        ),
        lambda e, m, d, x, t, k: reference_diffexplainer(e, x, t, k),
        atol=2e-4,
        criterion=0.5,
        method="diffexplainer",
    )
)
# The latent-space searches on an untrained (jolted) small VAE, and on a stand-in attribute
# model around it: few iterations, so the test is about the arithmetic.
VARIANTS += [
    Variant(
        "revise-class",
        "class",
        lambda m, d: make(
            "revise",
            REVISEConfig(optimizer="sgd", learning_rate=0.3, distance_weight=0.01, max_iter=30),
            classifier=m,
            vae=tiny_vae(),
        ),
        lambda e, m, d, x, t, k: reference_latent(e, x, t),
        atol=2e-5,
        criterion=0.5,
        method="revise",
    ),
    Variant(
        "xgems-soft",
        "soft",
        lambda m, d: make(
            "xgems",
            XGEMsConfig(learning_rate=0.1, distance_weight=0.1, tolerance=0.3, max_iter=30),
            classifier=m,
            vae=tiny_vae(),
        ),
        lambda e, m, d, x, t, k: reference_latent(e, x, t),
        atol=2e-5,
        promotion="standard",
        criterion=0.3,
        method="xgems",
    ),
    Variant(
        "aip-class",
        "class",
        lambda m, d: make(
            "aip", AIPConfig(max_iter=30), classifier=m, attribute_model=tiny_attribute_model()
        ),
        lambda e, m, d, x, t, k: reference_aip(e, x, t),
        atol=2e-5,
        criterion=0.5,
        method="aip",
    ),
    Variant(
        "aip-retry",
        "class",
        lambda m, d: make(
            "aip",
            AIPConfig(max_iter=15, step_scale=0.1, schedule=(1.0,)),
            classifier=m,
            attribute_model=tiny_attribute_model(),
        ),
        lambda e, m, d, x, t, k: reference_aip_retry(e, x, t),
        atol=1e-4,  # the retry's 10x larger steps amplify rounding (batch-size-dependent sums)
        criterion=0.5,
        method="aip",
    ),
    Variant(
        "aip-random-class",
        "class",
        lambda m, d: make(
            "aip_random",
            AIPRandomConfig(alpha=0.1, beta=0.97, max_iter=30),
            classifier=m,
            attribute_model=tiny_attribute_model(),
        ),
        lambda e, m, d, x, t, k: reference_aip_random(e, x, t, k),
        atol=2e-5,
        num_cfs=2,
        criterion=0.5,
        method="aip_random",
    ),
]
# CFProto with prototypes from real training rows (other than the queries): on MNIST through
# the jolted small VAE (codes, reconstruction term, the 5 nearest codes), on Adult's encoded rows
# in input space (the nearest row of the class, the hinge on logits). Few steps, two rounds.
_BANKS: dict = {}


def _bank(model, problem: str):
    """The prototype bank of a problem's classifier, built once per model."""
    key = (id(model), problem)
    if key not in _BANKS:
        if problem == "mnist":  # labelled by the classifier, as the paper does
            rows = load_dataset("mnist", "test").inputs[200:500]
            bank = prototype_bank(rows, classifier=model, autoencoder=tiny_vae())
        else:
            data = load_dataset("adult", "test")
            bank = prototype_bank(data.inputs[100:400], data.labels[100:400], num_classes=2)
        _BANKS[key] = (model, bank)  # kept alive: its id is not reused
    return _BANKS[key][1]


_CFPROTO = {
    "mnist": CFProtoConfig(
        beta=0.02,
        gamma=0.5,
        theta=1.0,
        c_init=1.0,
        c_steps=2,
        learning_rate=0.1,
        max_iter=10,
        patience=2,
        k=5,
    ),
    "adult": CFProtoConfig(
        beta=0.01,
        theta=0.5,
        c_init=5.0,
        c_steps=2,
        learning_rate=0.05,
        max_iter=8,
        patience=1,
        margin="logits",
    ),
}
for _problem, _cfg in _CFPROTO.items():
    VARIANTS.append(
        Variant(
            f"cfproto-{_problem}",
            "class",
            lambda m, d, cfg=_cfg, problem=_problem: make(
                "cfproto", cfg, classifier=m, prototypes=_bank(m, problem)
            ),
            lambda e, m, d, x, t, k: references.reference_cfproto(e.search, x, t),
            atol=2e-5,
            criterion=_cfg.threshold,
            problem=_problem,
            method="cfproto",
        )
    )
# CFProto judging the rows its iterates decode to (``project``); the reference loop decodes and
# encodes in NumPy, the search projects in JAX.
_ROWS = adult_transform().projection()
# Steps long enough for a whole category to change (a projected iterate to flip class).
_CFPROTO_ROWS = dataclasses.replace(_CFPROTO["adult"], c_init=20.0, learning_rate=0.15, max_iter=12)
VARIANTS.append(
    Variant(
        "cfproto-adult-rows",
        "class",
        lambda m, d: dataclasses.replace(
            (e := make("cfproto", _CFPROTO_ROWS, classifier=m, prototypes=_bank(m, "adult"))),
            search=e.search.replace(project=_ROWS),
        ),
        lambda e, m, d, x, t, k: references.reference_cfproto(
            e.search, x, t, project=references.decode_encode(adult_transform())
        ),
        atol=5e-5,  # alphas: float32 projection against float64 decoding
        criterion=_CFPROTO_ROWS.threshold,
        problem="adult",
        method="cfproto",
    )
)
IDS = [v.name for v in VARIANTS]


def test_every_registered_method_has_a_row():
    """Every registered method runs through the contract; each row's ``method`` is the one its
    ``build`` makes (read from the build's code: nothing is built)."""
    registered = set(method_names())
    for v in VARIANTS:
        made = {c for c in v.build.__code__.co_consts if isinstance(c, str)} & registered
        expected = {v.method} if v.method else set()
        assert made == expected, f"row {v.name}: method={v.method!r}, but build makes {made}"
    missing = sorted(registered - {v.method for v in VARIANTS})
    assert not missing, f"registered methods without a row in VARIANTS: {missing}"


def make_targets(kind: str, model, x: np.ndarray) -> np.ndarray:
    """Reachable targets of a kind: mostly the runner-up class, or halfway to it."""
    logits = np.asarray(model.logits(x))
    order = np.argsort(logits, axis=-1)
    runner_up, top = order[:, -2], order[:, -1]
    if kind == "class":
        other = (top + 3) % logits.shape[1]  # usually out of reach in a few steps: failures too
        return np.where(np.arange(len(x)) % 3 == 2, other, runner_up).astype(np.int32)
    if kind == "soft":
        q = np.zeros(logits.shape, np.float32)
        q[np.arange(len(x)), runner_up] = 0.6
        q[np.arange(len(x)), top] = 0.4
        return q
    return (logits[:, 0] + np.where(np.arange(len(x)) % 2, 1.0, 4.0)).astype(np.float32)


@pytest.fixture(scope="module")
def ecg_problem():
    """An untrained small BiLSTM on 10 real ECG5000 test beats (the contract does not need a
    good classifier, only a fixed one)."""
    from jaxcf.data import load_dataset
    from jaxcf.models import BiLSTMConfig, build

    model = build(BiLSTMConfig(input_shape=(140, 1), hidden=8), seed=3)
    return model, None, np.asarray(load_dataset("ecg5000", "test").inputs[:N])


@pytest.fixture(scope="module")
def adult_problem():
    """An untrained small MLP on 10 encoded Adult test rows."""
    from jaxcf.data import load_dataset
    from jaxcf.models import MLPConfig, build

    model = build(MLPConfig(input_shape=(adult_transform().dim,), num_classes=2, hidden=16), seed=3)
    return model, None, np.asarray(load_dataset("adult", "test").inputs[:N])


@pytest.fixture(params=VARIANTS, ids=IDS)
def case(request):
    v = request.param
    if v.problem == "mnist":
        model, density, _ = request.getfixturevalue("trained")
        x = np.asarray(request.getfixturevalue("mnist_test").images[:N])
    else:
        model, density, x = request.getfixturevalue(f"{v.problem}_problem")
    with jax.numpy_dtype_promotion(v.promotion):
        yield v, v.build(model, density), model, density, x, make_targets(v.kind, model, x)


def _direct(explainer, x, t, keys):
    if isinstance(explainer, SearchExplainer):
        return solve_jit(explainer.search, jnp.asarray(x), jnp.asarray(t), keys)
    return jax.jit(lambda e, a, b, k: e(a, b, k))(explainer, jnp.asarray(x), jnp.asarray(t), keys)


def _run(explainer, x, t, path, *, devices=1, chunk=64, slots=None, num_cfs=1):
    return runner.run(
        explainer,
        x,
        t,
        path,
        config=runner.RunnerConfig(chunk_size=chunk, slots=slots, segment=2),
        mesh=mesh(devices),
        num_cfs=num_cfs,
        seed=7,
        progress=False,
    )


def _assert_same(a: Results, b: Results, atol: float = 0.0, criterion: float | None = None):
    """Equal records. Continuous methods (``atol > 0``) agree to float rounding, which may differ
    with the batch size (a convolution summed in another order): ``x_cf`` to ``atol``, and a
    success flag only flips for a score within 1e-4 of the success ``criterion``."""
    for f in ("query", "cf", "target"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    flipped = a.success != b.success
    if atol and criterion is not None:
        assert np.all(np.abs(a.score[flipped] - criterion) < 1e-4), "a decision moved"
    else:
        assert not flipped.any(), "success differs"
    np.testing.assert_array_equal(a.n_iter[~flipped], b.n_iter[~flipped], err_msg="n_iter")
    np.testing.assert_allclose(a.x_cf, b.x_cf, rtol=0, atol=atol, err_msg="x_cf")
    np.testing.assert_allclose(a.score, b.score, rtol=1e-4, atol=1e-5)
    assert set(a.extras) == set(b.extras)
    for k in a.extras:
        np.testing.assert_allclose(a.extras[k], b.extras[k], rtol=0, atol=atol, err_msg=k)


# ----------------------------------------------------------------------------- the tests


def test_batched_equals_reference_loop(case):
    v, explainer, model, density, x, t = case
    xs, ts = explainer.check(x, t)
    keys = jax.random.split(jax.random.key(3), N)
    got = _direct(explainer, xs, ts, keys)
    refs = [v.reference(explainer, model, density, x[i], t[i], keys[i]) for i in range(N)]
    oks = [bool(r[1]) for r in refs]
    assert 0 < sum(oks) < N or v.kind != "class", "want both successes and failures"
    if isinstance(explainer, Retry):  # the table must exercise the retries themselves
        retried = np.asarray(got.extras["attempt"])[np.asarray(got.success)]
        assert np.any(retried > 0), "no query was solved by a later attempt"
    for i, (x_ref, ok, n, s) in enumerate(refs):
        assert bool(got.success[i]) == ok, f"query {i}: success"
        assert int(got.n_iter[i]) == n, f"query {i}: n_iter {int(got.n_iter[i])} vs {n}"
        np.testing.assert_allclose(np.asarray(got.x_cf[i]), x_ref, atol=v.atol, err_msg=f"q{i}")
        np.testing.assert_allclose(float(got.score[i]), s, rtol=1e-4, atol=1e-5)


def test_sharded_chunked_and_padded_runs_agree_and_a_second_run_compiles_nothing(case, tmp_path):
    """4 devices with small chunks (the last one padded) and one refilled slot per device ==
    1 device, one chunk, one batch; then a run of the same shapes on other values compiles
    nothing. (One test, one sharded layout: the second run reuses the programs the sharded
    run compiled, which a test or a layout of its own would compile again.)"""
    v, explainer, *_, x, t = case
    one = _run(explainer, x, t, tmp_path / "one", num_cfs=v.num_cfs)
    four = _run(explainer, x, t, tmp_path / "four", devices=4, chunk=8, slots=1, num_cfs=v.num_cfs)
    _assert_same(one, four, v.atol, v.criterion)
    assert len(one) == N * v.num_cfs and one.timings["devices"] == 1
    assert four.timings["devices"] == FAKE_DEVICES
    np.testing.assert_array_equal(one.query, np.repeat(np.arange(N), v.num_cfs))
    if v.num_cfs > 1:  # each counterfactual of a query has its own key
        assert not np.array_equal(one.x_cf[0], one.x_cf[1])
    before = runner.program_cache_size()
    # Same shapes, other values: a fresh run into another directory.
    x2 = np.clip(x[::-1] + 0.01, 0.0, 1.0)
    _run(
        explainer,
        x2,
        t[::-1].copy(),
        tmp_path / "again",
        devices=4,
        chunk=8,
        slots=1,
        num_cfs=v.num_cfs,
    )
    assert runner.program_cache_size() == before


def _bad_inputs(kind, x, t):
    cases = [
        ("empty", x[:0], t[:0], ValueError),
        ("length", x, t[:3], ValueError),
        ("nan", np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), t, ValueError),
        ("strings", np.array([["a"]]), t[:1], TypeError),
        ("bool-target", x, np.ones(len(x), bool), TypeError),
    ]
    if kind == "class":
        cases.append(("class-out-of-range", x, np.full_like(t, 10), ValueError))
    elif kind == "soft":
        cases.append(("not-a-distribution", x, t * 2.0, ValueError))
    else:
        cases.append(("target-inf", x, np.full_like(t, np.inf), ValueError))
    return cases


def test_bad_input_raises_before_compiling_or_writing(case, tmp_path):
    v, explainer, *_, x, t = case
    for name, xb, tb, err in _bad_inputs(v.kind, x, t):
        before = runner.program_cache_size()
        with pytest.raises(err):
            explainer.check(xb, tb)
        with pytest.raises(err):
            runner.run(explainer, xb, tb, tmp_path / name, progress=False, mesh=mesh(1))
        assert not (tmp_path / name).exists(), f"{name}: nothing may be written"
        assert runner.program_cache_size() == before, name


# ----------------------------------------------------------------------------- beyond the table


def test_user_explainer_end_to_end_with_metrics_and_report(trained, mnist_test, tmp_path):
    """Class, soft and regression targets, 3 counterfactuals per query, 4 devices: the record
    loads into the metrics, the per-query aggregates and the report without renaming."""
    model, _, _ = trained
    x = np.asarray(mnist_test.images[:N])
    for kind, clf in (("class", as_pure(model)), ("soft", as_pure(model))):
        explainer = NoisyDescent(clf)
        t = make_targets(kind, model, x)
        res = _run(explainer, x, t, tmp_path / kind, devices=4, chunk=8, num_cfs=3)
        loaded = Results.load(tmp_path / kind)
        _assert_same(res, loaded)
        rows = metrics.row_metrics(loaded, classifier=model, tolerance=0.2)
        assert np.all(rows["valid"][loaded.success])  # success re-scored by the classifier
        per_query = metrics.query_metrics(loaded, rows)
        assert len(per_query["query"]) == N
        assert np.all(per_query["n_success"] <= 3)
        multi = per_query["n_success"] >= 2
        assert multi.any() and np.all(per_query["diversity"][multi] > 0)
        summary = metrics.summarize(rows, sets=loaded.group)
        table = report.markdown_table({"noisy": summary})
        assert "| noisy | 30 |" in table
    reg = _regressor(model)
    t = make_targets("regression", model, x)
    res = _run(NoisyDescent(reg), x, t, tmp_path / "reg", devices=4, chunk=8, num_cfs=3)
    rows = metrics.row_metrics(Results.load(tmp_path / "reg"), classifier=reg, tolerance=0.2)
    assert np.mean(rows["valid"] == res.success) > 0.9  # one criterion, up to rounding
    evaluation = experiment.evaluate({"a": res, "b": res}, classifiers={"a": reg, "b": reg})
    assert evaluation["queries"]["a"]["n"] == N
    paired = evaluation["common"]["paired"]["a_minus_b"]
    assert paired["n"] == res.success.sum() and paired["l0"]["diff"] == 0.0
    only_a = experiment.evaluate({"a": res, "b": res}, common_over=("a",))
    assert only_a["common"]["over"] == ["a"] and "b" not in only_a["common"]
    with pytest.raises(ValueError, match="did not run"):
        experiment.evaluate({"a": res}, common_over=("c",))
    doc = experiment.write_report(tmp_path / "report", {"a": res}, evaluation, title="regression")
    assert doc["rows"] == 3 * N and (tmp_path / "report" / "grid.png").exists()


def test_solve_takes_per_query_keys_and_runs_sharded_in_one_program(trained, mnist_test):
    """The search drivers accept keys and shard like any jitted function."""
    model, density, _ = trained
    search = make("jsma", JSMAConfig(max_iter=20), classifier=model).search
    x = jnp.asarray(mnist_test.images[:8])
    t = jnp.asarray(make_targets("class", model, np.asarray(x))[:8])
    plain = jax.jit(solve)(search, x, t)
    keys = jax.random.split(jax.random.key(0), 8)
    data = jax.sharding.NamedSharding(mesh(4), jax.sharding.PartitionSpec("data"))
    replicated = jax.sharding.NamedSharding(mesh(4), jax.sharding.PartitionSpec())
    put = jax.device_put
    sharded = jax.jit(solve)(put(search, replicated), put(x, data), put(t, data), put(keys, data))
    np.testing.assert_array_equal(plain.x_cf, sharded.x_cf)


@pytest.mark.standard_promotion  # optax's Adam
def test_wachter_lambda_search_keeps_the_closest_valid_iterate(trained, mnist_test):
    """Its first round (weight ``l1_weight``, fresh Adam) retraces the first-valid search, so
    with ``patience`` above that search's step count the first valid iterate is a candidate:
    the search over the weight never returns a farther counterfactual, and never fails where
    the first-valid search succeeded. Later rounds raise the weight tenfold while rounds find
    candidates, then bisect."""
    model, _, _ = trained
    x = np.asarray(mnist_test.images[:16])
    t = make_targets("class", model, x)
    first_cfg = WachterConfig(learning_rate=0.02, max_iter=40)
    first = wachter(model, x, t, first_cfg)
    assert first.success.all()
    cfg = dataclasses.replace(first_cfg, rounds=4, patience=int(first.n_iter.max()) + 1)
    found = wachter(model, x, t, cfg)
    l1 = lambda r: np.abs(np.asarray(r.x_cf) - x).reshape(len(x), -1).sum(-1)  # noqa: E731
    assert found.success.all()
    assert np.all(l1(found) <= l1(first) + 1e-4)
    assert np.mean(l1(found)) < np.mean(l1(first))  # the later rounds find closer ones
    lam = np.asarray(found.extras["l1_weight"])
    assert np.all(lam > cfg.l1_weight), lam
    decades = np.log10(lam / cfg.l1_weight)
    assert np.any(np.abs(decades - np.round(decades)) > 0.01), lam  # some were bisected
    assert np.all(found.n_iter > first.n_iter)  # it keeps searching past the first flip
