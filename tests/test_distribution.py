"""Tests for jaxcf.evaluation.distribution and jaxcf.report: MMD against a double-loop reference
and on
samples of equal and shifted distributions, the median-heuristic bandwidth by hand, per-class MMD
and its NaN rules, the fixed image encoder's determinism and batch invariance, and the
generator figures as PNGs."""

import math
import subprocess
import sys

import numpy as np
import pytest

from jaxcf import report
from jaxcf.evaluation import distribution

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def _reference_mmd2(a, b, s):
    """Gretton et al.'s unbiased MMD^2, term by term with Python loops over Python floats."""
    a, b = np.asarray(a, np.float64).tolist(), np.asarray(b, np.float64).tolist()

    def k(x, y):
        return math.exp(-sum((xi - yi) ** 2 for xi, yi in zip(x, y, strict=True)) / (2 * s * s))

    n, m = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    bb = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    ab = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return aa + bb - 2 * ab


def _reference_bandwidth(a, b):
    p = np.concatenate([a, b]).astype(np.float64)
    d = [float(np.sum((p[i] - p[j]) ** 2)) for i in range(len(p)) for j in range(i + 1, len(p))]
    return math.sqrt(float(np.median(d)) / 2)


def test_mmd2_matches_double_loop_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 3))
    b = rng.normal(1.0, 2.0, size=(7, 3)).astype(np.float32)  # any float dtype, promoted
    for s in (0.3, 1.0, 4.0):
        assert distribution.mmd2(a, b, s) == pytest.approx(_reference_mmd2(a, b, s), rel=1e-12)
    s = _reference_bandwidth(a, b)
    assert distribution.median_bandwidth(a, b) == pytest.approx(s, rel=1e-12)
    assert distribution.mmd2(a, b) == pytest.approx(_reference_mmd2(a, b, s), rel=1e-12)
    # An even number of pooled pairs (here 6 points: 15 pairs, odd; 5 points: 10 pairs, even).
    assert distribution.median_bandwidth(a[:3], b[:2]) == pytest.approx(
        _reference_bandwidth(a[:3], b[:2]), rel=1e-12
    )


def test_mmd2_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 4))
    b = rng.normal(size=(400, 4))
    shifted = rng.normal(0.5, 1.0, size=(400, 4))
    same, moved = distribution.mmd2(a, b), distribution.mmd2(a, shifted)
    # The unbiased estimate's spread for equal distributions is O(1 / n): about 1e-3 here.
    assert abs(same) < 3e-3
    assert moved > 10 * abs(same) and moved > 0.02
    assert distribution.mmd2(a, a + 3.0) > distribution.mmd2(a, shifted)


def test_mmd2_symmetric_translation_invariant_deterministic_and_flattens():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(40, 2, 3))  # [N, ...] flattened to [N, 6]
    b = rng.normal(0.3, 1.0, size=(30, 2, 3))
    ab = distribution.mmd2(a, b)
    assert distribution.mmd2(b, a) == pytest.approx(ab, rel=1e-12)
    assert distribution.mmd2(a + 100.0, b + 100.0) == pytest.approx(ab, rel=1e-9)
    assert distribution.mmd2(a, b) == ab  # bitwise on a second call
    assert distribution.mmd2(a.reshape(40, 6), b.reshape(30, 6)) == ab
    # The blocked sums agree with one block.
    small = distribution._BLOCK_ENTRIES
    try:
        distribution._BLOCK_ENTRIES = 7
        assert distribution.mmd2(a, b) == pytest.approx(ab, rel=1e-12)
    finally:
        distribution._BLOCK_ENTRIES = small


def test_median_bandwidth_subsamples_deterministically():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(150, 5)), rng.normal(size=(100, 5))
    exact = distribution.median_bandwidth(a, b)
    sub = distribution.median_bandwidth(a, b, max_points=120)
    assert sub == distribution.median_bandwidth(a, b, max_points=120)
    assert sub == pytest.approx(exact, rel=0.1) and sub != exact


@pytest.mark.parametrize(
    "a, b, kwargs, error, match",
    [
        (np.zeros(4), np.zeros((3, 1)), {}, ValueError, r"\[N, D\]"),
        (np.zeros((1, 2)), np.ones((3, 2)), {}, ValueError, "at least 2"),
        (np.zeros((3, 2)), np.ones((3, 3)), {}, ValueError, "features"),
        (np.full((3, 2), np.nan), np.ones((3, 2)), {}, ValueError, "NaN"),
        (np.array([["a", "b"]] * 3), np.ones((3, 2)), {}, TypeError, "numeric"),
        (np.zeros((3, 2)), np.ones((3, 2)), {"bandwidth": 0.0}, ValueError, "positive"),
        (np.zeros((3, 2)), np.ones((3, 2)), {"bandwidth": "wide"}, TypeError, "bandwidth"),
        (np.zeros((3, 2)), np.zeros((3, 2)), {}, ValueError, "pass bandwidth"),
    ],
)
def test_mmd2_rejects_bad_input(a, b, kwargs, error, match):
    with pytest.raises(error, match=match):
        distribution.mmd2(a, b, **kwargs)


def test_class_mmd2_per_class_and_nan_rules():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(60, 3))
    labels = np.repeat([0, 1, 2], 20)
    labels[-1] = 3  # class 3: one real instance
    cf = rng.normal(size=(25, 3))
    pred = np.array([0] * 10 + [1] * 1 + [3] * 8 + [2] * 6)  # class 1: one counterfactual
    out = distribution.class_mmd2(cf, pred, real, labels, num_classes=5)
    assert out.shape == (5,) and out.dtype == np.float64
    # Class 0 and 2 have >= 2 rows on both sides; 1 (one cf), 3 (one real), 4 (none) are NaN.
    np.testing.assert_array_equal(np.isnan(out), [False, True, False, True, True])
    for c in (0, 2):
        expected = distribution.mmd2(cf[pred == c], real[labels == c])
        assert out[c] == expected
    shared = distribution.class_mmd2(cf, pred, real, labels, 5, bandwidth=0.7)
    assert shared[0] == distribution.mmd2(cf[pred == 0], real[labels == 0], 0.7)
    with pytest.raises(ValueError, match="outside"):
        distribution.class_mmd2(cf, pred, real, labels, num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        distribution.class_mmd2(cf, pred[:-1], real, labels, num_classes=5)
    with pytest.raises(TypeError, match="integer"):
        distribution.class_mmd2(cf, pred.astype(float), real, labels, num_classes=5)
    with pytest.raises(TypeError, match="num_classes"):
        distribution.class_mmd2(cf, pred, real, labels, num_classes=5.0)


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 3)])
def test_encoder_is_deterministic_and_batch_invariant(shape):
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(7, *shape)).astype(np.float32)
    z = distribution.encode_images(x, batch_size=3)  # batches of 3, 3 and 1 padded to 3
    assert z.shape == (7, distribution.ENCODER_DIM) and z.dtype == np.float32
    assert np.all(np.isfinite(z)) and np.std(z) > 0
    # Same seed: the same numbers, from a freshly built module too.
    np.testing.assert_array_equal(distribution.encode_images(x, batch_size=3), z)
    fresh = distribution.make_image_encoder(shape, seed=0)
    np.testing.assert_allclose(np.asarray(fresh(x)), z, rtol=1e-5, atol=1e-6)
    # A row does not depend on its batch's other rows or on padding.
    np.testing.assert_array_equal(distribution.encode_images(x[:4], batch_size=3), z[:4])
    np.testing.assert_allclose(distribution.encode_images(x, batch_size=8), z, rtol=1e-5, atol=1e-6)
    # Another seed, another encoder.
    assert not np.allclose(distribution.encode_images(x, seed=1, batch_size=3), z)


def test_encoder_architecture_and_errors():
    enc = distribution.make_image_encoder((28, 28, 1))
    kernels = [conv.kernel[...].shape for conv in enc.convs]
    assert kernels == [(7, 7, 1, 64), (7, 7, 64, 128), (7, 7, 128, 256)]
    assert enc.linear.kernel[...].shape == (4 * 4 * 256, 32)
    assert distribution.make_image_encoder((64, 64, 3)).linear.kernel[...].shape == (
        8 * 8 * 256,
        32,
    )
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        distribution.encode_images(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="NaN"):
        distribution.encode_images(np.full((2, 8, 8, 1), np.nan))
    with pytest.raises(ValueError, match="empty"):
        distribution.encode_images(np.zeros((0, 8, 8, 1)))


def test_encoded_mmd_separates_image_sets():
    """The use the encoder is for: two halves of one image distribution against a brighter one."""
    rng = np.random.default_rng(6)
    x = rng.uniform(0.0, 0.6, size=(80, 28, 28, 1)).astype(np.float32)
    brighter = rng.uniform(0.4, 1.0, size=(40, 28, 28, 1)).astype(np.float32)
    z, zb = distribution.encode_images(x, batch_size=40), distribution.encode_images(brighter, 40)
    same = distribution.mmd2(z[:40], z[40:])
    assert distribution.mmd2(z[:40], zb) > 10 * abs(same)


# --------------------------------------------------------------------------------------------
# Figures


def test_import_leaves_matplotlib_global_state_alone():
    code = (
        "import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none(); "
        "import jaxcf.report; "
        "assert 'matplotlib.pyplot' not in sys.modules; "
        "assert matplotlib.rcParams._get_backend_or_none() == before"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pca_2d_by_hand():
    # Centred, uncorrelated scores with variances 9 and 1 (orthonormal columns, scaled) along
    # (1, 1, 0) / sqrt 2 and (0, 0, 1): the principal axes and their shares are known exactly.
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(500, 2))
    # Q spans the centred columns, so its columns are orthonormal and (to rounding) centred.
    scores, _ = np.linalg.qr(scores - scores.mean(axis=0))
    axes = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    axes[0] /= np.sqrt(2)
    x = (scores * [3.0, 1.0]) @ axes + 5.0  # an offset the PCA removes
    (p, q), ratio = report.pca_2d(x, x[:5] + np.array([1.0, 1.0, 0.0]))
    assert p.shape == (500, 2) and q.shape == (5, 2)
    np.testing.assert_allclose(ratio, [0.9, 0.1], rtol=1e-9)
    # Signs: the largest loading of each axis is positive, so the shift by (1, 1, 0) moves
    # projections along +PC1 by sqrt 2 and leaves PC2 alone.
    np.testing.assert_allclose(q[:, 0] - p[:5, 0], np.sqrt(2), rtol=1e-9)
    np.testing.assert_allclose(q[:, 1] - p[:5, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(np.abs(p), np.abs(scores * [3.0, 1.0]), atol=1e-9)
    with pytest.raises(ValueError, match="features"):
        report.pca_2d(x, np.zeros((2, 4)))


def test_embedding_plot_writes_png(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(60, 32)).astype(np.float32)
    pred = np.arange(60) % 3
    x_cf = x[:20] + rng.normal(0.0, 0.3, size=(20, 32))
    pred_cf = (pred[:20] + 1) % 3
    path = tmp_path / "embed.png"
    fig = report.embedding_plot(
        path, x, x_cf, pred, pred_cf, ["zero", "one", "two"], "MNIST", query=np.arange(20)
    )
    assert _is_png(path) and "PC1" in fig.axes[0].get_xlabel()
    # Class names default to indices; images flatten.
    report.embedding_plot(
        tmp_path / "b.png", x.reshape(60, 4, 8), x_cf.reshape(20, 4, 8), pred, pred_cf
    )
    assert _is_png(tmp_path / "b.png")
    with pytest.raises(ValueError, match="outside"):
        report.embedding_plot(tmp_path / "c.png", x, x_cf, pred, pred_cf, ["a", "b"])
    with pytest.raises(ValueError, match="method"):
        report.embedding_plot(tmp_path / "c.png", x, x_cf, pred, pred_cf, method="tsne")
    with pytest.raises(ValueError, match="features"):
        report.embedding_plot(tmp_path / "c.png", x, x_cf[:, :5], pred, pred_cf)
    assert not (tmp_path / "c.png").exists()


def test_target_scatter_soft_and_regression(tmp_path):
    rng = np.random.default_rng(9)
    target = rng.dirichlet(np.ones(4), size=50)
    achieved = 0.8 * target + 0.2 * rng.dirichlet(np.ones(4), size=50)
    path = tmp_path / "soft.png"
    fig = report.target_scatter(path, target, achieved, "soft", success=rng.uniform(size=50) < 0.7)
    assert _is_png(path) and fig.axes[0].get_xlim() == (0.0, 1.0)
    value = rng.normal(size=40)
    out = (value + rng.normal(0.0, 0.1, size=40))[:, None]  # a regression model's [N, 1]
    report.target_scatter(tmp_path / "reg.png", value, out, kind="regression", tolerance=0.1)
    assert _is_png(tmp_path / "reg.png")
    with pytest.raises(ValueError, match="kind"):
        report.target_scatter(tmp_path / "x.png", value, out, kind="class")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        report.target_scatter(tmp_path / "x.png", value, out[:, 0], kind="soft")
    with pytest.raises(ValueError, match="regression"):
        report.target_scatter(tmp_path / "x.png", target, achieved, tolerance=0.1)
    with pytest.raises(ValueError, match="achieved"):
        report.target_scatter(tmp_path / "x.png", value, out[:-1], kind="regression")


@pytest.mark.parametrize("channels", [1, 2])
def test_series_grid_writes_png(tmp_path, channels):
    t = np.linspace(0, 2 * np.pi, 140)
    x = np.stack([np.sin(t + p)[:, None].repeat(channels, 1) for p in range(6)]).astype(np.float32)
    x_cf = x + 0.3 * np.cos(t)[None, :, None]
    path = tmp_path / "ecg.png"
    fig = report.series_grid(
        path, x, x_cf, pred=np.zeros(6, int), target=np.ones(6, int), class_names=["N", "A"], n=5
    )
    assert _is_png(path)
    assert fig.axes[0].get_title() == "pred N \u2192 A"
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes) == 5
    report.series_grid(
        tmp_path / "t.png", x[..., 0], x_cf[..., 0], titles=[f"q{i}" for i in range(6)]
    )
    assert _is_png(tmp_path / "t.png")
    with pytest.raises(ValueError, match="shape"):
        report.series_grid(tmp_path / "x.png", x, x_cf[:, :-1])
    with pytest.raises(ValueError, match="titles"):
        report.series_grid(tmp_path / "x.png", x, x_cf, titles=["a"])


def test_attribute_figures_write_pngs_and_check_their_inputs(tmp_path):
    rng = np.random.default_rng(0)
    names = ("Male", "Young", "Bangs")
    x = rng.uniform(size=(2, 8, 8, 3)).astype(np.float32)
    delta = np.array([[0.4, -0.1, 0.0], [-0.2, 0.3, 0.05]])
    fig = report.attribute_change_figure(tmp_path / "q.png", x, x[::-1], delta, names, top=2)
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Per query, the two largest changes, the largest on top.
    bars = fig.axes[2]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["Young", "Male"]
    with pytest.raises(ValueError, match="attribute names"):
        report.attribute_change_figure(tmp_path / "x.png", x, x, delta, names[:2])
    with pytest.raises(ValueError, match="delta"):
        report.attribute_change_figure(tmp_path / "x.png", x, x, delta[:1], names)
    rows = [
        {"attribute": "Young", "mean_abs_change": 0.1},
        {"attribute": "Male", "mean_abs_change": 0.3},
    ]
    fig = report.attribute_ranking_plot(tmp_path / "r.png", {"age": rows, "none": []}, names)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Young", "Male"]
    # With the signed mean change, a bar's colour says which way the attribute moved.
    signed = [{**rows[0], "mean_change": -0.1}, {**rows[1], "mean_change": 0.2}]
    fig = report.attribute_ranking_plot(tmp_path / "s.png", {"age": signed}, names)
    young, male = (tuple(p.get_facecolor()) for p in fig.axes[0].patches)
    assert young != male and len(fig.legends) == 1
    with pytest.raises(ValueError, match="unknown attributes"):
        report.attribute_ranking_plot(
            tmp_path / "x.png", {"a": [{"attribute": "Bald", "mean_abs_change": 1.0}]}, names
        )
    with pytest.raises(ValueError, match="empty"):
        report.attribute_ranking_plot(tmp_path / "x.png", {}, names)


def test_method_scatter_labels_every_point_and_joins_a_series(tmp_path):
    points = {"aip": (0.08, 75.0), "fgsm": (0.02, 13.0), "fgsm_eps_0.1": (0.09, 68.0)}
    fig = report.method_scatter(tmp_path / "m.png", points, series=[["fgsm", "fgsm_eps_0.1"]])
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(points)
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xydata(), [points["fgsm"], points["fgsm_eps_0.1"]])
    with pytest.raises(ValueError, match="unknown points"):
        report.method_scatter(tmp_path / "x.png", points, series=[["fgsm", "jsma"]])
    with pytest.raises(ValueError, match="non-finite"):
        report.method_scatter(tmp_path / "x.png", {"a": (float("nan"), 1.0)})
    with pytest.raises(ValueError, match="empty"):
        report.method_scatter(tmp_path / "x.png", {})
