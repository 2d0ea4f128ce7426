"""zoo.align stitches: fitting recovers known maps, files round-trip exactly, tampering is refused."""

from __future__ import annotations

import pickle
import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.align import AnchorSet, SpaceRef, Stitch, evaluate_stitch, fit_stitch
from zoo.align._files import dump_toml, sha256_file
from zoo.embeddings import Embeddings
from zoo.errors import CardError, IntegrityError, InvalidInputError, SpaceMismatchError


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rotation(d, seed):
    q, r = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _pair(seed=0, n=300, da=24, db=16, noise=0.05, latent=12):
    """Two "models" of the same items: different non-linear views of one latent, plus noise."""
    rng = _rng(seed)
    z = rng.normal(size=(n, latent))
    a = np.tanh(z @ rng.normal(size=(latent, da))) + noise * rng.normal(size=(n, da))
    b = z @ rng.normal(size=(latent, db)) + noise * rng.normal(size=(n, db))
    return a.astype(np.float32), b.astype(np.float32)


# --------------------------------------------------------------------------------------------- fitting


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 32), normalize=st.booleans(), center=st.booleans())
def test_procrustes_recovers_a_random_rotation(seed, d, normalize, center):
    x = _rng(seed).normal(size=(4 * d + 8, d))
    r = _rotation(d, seed + 1)
    st_ = fit_stitch(x, x @ r, normalize=normalize, center=center)
    np.testing.assert_allclose(st_.weight, r, atol=1e-5)
    np.testing.assert_allclose(st_.bias, 0, atol=1e-5)


def test_procrustes_with_scale_recovers_scale_times_rotation():
    x = _rng(1).normal(size=(100, 8))
    r = _rotation(8, 2)
    st_ = fit_stitch(x, 2.5 * x @ r, normalize=False, scale=True)
    np.testing.assert_allclose(st_.weight, 2.5 * r, atol=1e-5)
    np.testing.assert_allclose(st_(x), 2.5 * x @ r, atol=1e-4)


@pytest.mark.parametrize(("da", "db"), [(6, 10), (10, 6)])
def test_pad_policy_equals_procrustes_on_zero_padded_spaces(da, db):
    rng = _rng(3)
    x, y = rng.normal(size=(80, da)), rng.normal(size=(80, db))
    dim = max(da, db)
    xp, yp = np.zeros((80, dim)), np.zeros((80, dim))
    xp[:, :da], yp[:, :db] = x, y
    u, _, vt = np.linalg.svd(xp.T @ yp)
    padded = (u @ vt)[:da, :db]  # square orthogonal map between padded spaces, restricted to the real dims
    st_ = fit_stitch(x, y, normalize=False)
    assert st_.fit.dim_policy == "pad"
    np.testing.assert_allclose(st_.weight, padded, atol=1e-5)


def test_pad_policy_recovers_an_embedding_into_a_larger_space():
    x = _rng(4).normal(size=(60, 5))
    q = _rotation(9, 5)[:5]  # orthonormal rows: isometric embedding of R^5 into R^9
    st_ = fit_stitch(x, x @ q, normalize=False)
    np.testing.assert_allclose(st_.weight, q, atol=1e-5)


def test_pca_policy_maps_the_principal_subspace():
    rng = _rng(6)
    basis = _rotation(12, 7)[:, :4]  # x varies in 4 of 12 dims
    z = rng.normal(size=(200, 4)) * np.array([4.0, 3, 2, 1])
    x = z @ basis.T
    y = z @ _rotation(4, 8)
    st_ = fit_stitch(x, y, normalize=False, dim_policy="pca")
    assert st_.fit.dim_policy == "pca"
    np.testing.assert_allclose(st_(x), y, atol=1e-4)


def test_ridge_tends_to_least_squares():
    x, y = _pair(9, n=200, da=20, db=10)
    lstsq = fit_stitch(x, y, method="lstsq")
    ridge = fit_stitch(x, y, method="ridge", alpha=1e-9)
    np.testing.assert_allclose(ridge.weight, lstsq.weight, atol=1e-4)
    strong = fit_stitch(x, y, method="ridge", alpha=1e3)
    assert np.linalg.norm(strong.weight) < 0.1 * np.linalg.norm(lstsq.weight)


def test_ridge_dual_form_matches_the_primal_formula():
    x, y = _rng(10).normal(size=(15, 40)), _rng(11).normal(size=(15, 7))  # n < d: the dual form is used
    st_ = fit_stitch(x, y, method="ridge", alpha=0.5, normalize=False)
    primal = np.linalg.solve(x.T @ x + 0.5 * np.eye(40), x.T @ y)
    np.testing.assert_allclose(st_.weight, primal, atol=1e-5)


def test_lstsq_and_affine_recover_known_maps():
    rng = _rng(12)
    x = rng.normal(size=(100, 10))
    w, b = rng.normal(size=(10, 6)), rng.normal(size=6)
    linear = fit_stitch(x, x @ w, method="lstsq", normalize=False)
    np.testing.assert_allclose(linear.weight, w, atol=1e-4)
    affine = fit_stitch(x, x @ w + b, method="affine", normalize=False)
    assert affine.fit.center
    np.testing.assert_allclose(affine.weight, w, atol=1e-4)
    np.testing.assert_allclose(affine.bias, b, atol=1e-4)
    assert not np.allclose(fit_stitch(x, x @ w + b, method="lstsq", normalize=False)(x), x @ w + b, atol=1e-2)


def test_fit_refusals():
    x, y = _pair(13)
    with pytest.raises(InvalidInputError, match="pair up"):
        fit_stitch(x, y[:-1])
    with pytest.raises(InvalidInputError, match="alpha"):
        fit_stitch(x, y, method="ridge", alpha=0)
    with pytest.raises(InvalidInputError, match="affine"):
        fit_stitch(x, y, method="affine", center=False)
    with pytest.raises(InvalidInputError, match="method"):
        fit_stitch(x, y, method="cca")
    with pytest.raises(InvalidInputError, match="anchor set"):
        fit_stitch(x, y, anchors=AnchorSet(("a", "b")))
    bad = x.copy()
    bad[7, 0] = np.inf
    with pytest.raises(InvalidInputError) as err:
        fit_stitch(bad, y)
    assert err.value.index == 7
    with pytest.raises(InvalidInputError, match="dim"):
        fit_stitch(x, y, source=SpaceRef("a", "m", dim=99))


# ------------------------------------------------------------------------------------ applying and quality


def _emb(vectors, space):
    return Embeddings(vectors=np.asarray(vectors, np.float32), space=space, model=f"{space}-model", modality="text",
                      normalized=False)


def test_apply_checks_spaces_and_maps_embeddings():
    x, y = _pair(14)
    st_ = fit_stitch(_emb(x, "space-a"), _emb(y, "space-b"))
    assert (st_.source, st_.target) == (SpaceRef("space-a", "space-a-model", 24), SpaceRef("space-b", "space-b-model",
                                                                                           16))
    out = st_.apply(_emb(x[:5], "space-a"))
    assert isinstance(out, Embeddings) and out.space == "space-b" and out.shape == (5, 16)
    np.testing.assert_array_equal(out.vectors, st_(x[:5]))
    with pytest.raises(SpaceMismatchError):
        st_.apply(_emb(x[:5], "space-c"))
    with pytest.raises(InvalidInputError, match="dim"):
        st_.apply(y)
    with pytest.raises(SpaceMismatchError):
        fit_stitch(_emb(x, "space-a"), y, source="space-z")
    with pytest.raises(SpaceMismatchError):
        evaluate_stitch(st_, _emb(x[:20], "space-a"), _emb(y[:20], "space-c"))
    assert evaluate_stitch(st_, _emb(x[:20], "space-a"), _emb(y[:20], "space-b"))["n_test"] == 20


def test_evaluate_stitch_on_known_cases():
    x = _rng(15).normal(size=(200, 16))
    r = _rotation(16, 16)
    exact = fit_stitch(x[:150], x[:150] @ r)
    q = evaluate_stitch(exact, x[150:], x[150:] @ r)
    assert q["n_test"] == 50 and q["knn_k"] == 10
    for key in ("recall_at_1", "recall_at_10", "mrr", "ndcg_at_10", "topk_jaccard", "mutual_knn", "linear_cka"):
        assert q[key] == pytest.approx(1.0, abs=1e-6), key
    unrelated = evaluate_stitch(exact, x[150:], _rng(17).normal(size=(50, 16)))
    assert unrelated["recall_at_1"] < 0.15 and unrelated["linear_cka"] < 0.6


def test_stitching_two_different_models_beats_chance_by_far():
    a, b = _pair(18, n=1200)
    train, test = slice(0, 900), slice(900, 1200)
    results = {m: fit_stitch(a[train], b[train], method=m, test=(a[test], b[test])).quality
               for m in ("procrustes", "lstsq", "ridge", "affine")}
    for method, q in results.items():
        assert q["recall_at_10"] > 0.5, (method, q)  # chance is 10 / 300
    assert results["affine"]["recall_at_1"] > 0.3


# ------------------------------------------------------------------------------------------------ files


def _saved(tmp_path, **kw):
    a, b = _pair(19)
    anchors = AnchorSet(tuple(f"item {i}" for i in range(200)), version="2", name="synthetic")
    st_ = fit_stitch(a[:200], b[:200], source=SpaceRef("space-a", "model-a"), target=SpaceRef("space-b", "model-b"),
                     anchors=anchors, test=(a[200:], b[200:]), **kw)
    return st_, st_.save(tmp_path / "stitch"), a


@pytest.mark.parametrize("method", ["procrustes", "ridge", "affine"])
def test_save_load_round_trip_is_exact(tmp_path, method):
    st_, card, a = _saved(tmp_path, method=method)
    loaded = Stitch.load(tmp_path / "stitch", source="space-a", target="space-b")
    np.testing.assert_array_equal(loaded(a), st_(a))
    assert (loaded.source, loaded.target, loaded.fit, loaded.anchors) == (st_.source, st_.target, st_.fit,
                                                                          st_.anchors)
    assert loaded.quality == st_.quality
    doc = tomllib.loads(card.read_text())
    assert doc["source"] == {"space": "space-a", "model": "model-a", "dim": 24}
    assert doc["anchors"]["count"] == 200 and doc["anchors"]["version"] == "2"
    assert doc["fit"]["method"] == method and set(doc["quality"]) >= {"recall_at_1", "recall_at_10", "mrr",
                                                                      "topk_jaccard", "linear_cka", "mutual_knn"}
    assert Stitch.load(card).fit == st_.fit  # the card's own path works too


def _edit_card(card, old, new):
    text = card.read_text()
    assert old in text, old
    card.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("old", "new", "match"), [
    ('format_version = 1\n', 'format_version = 1\nnote = "hi"\n', "note is not a stitch card field"),
    ("[fit]\n", "[fit]\nlearning_rate = 0.1\n", "fit.learning_rate is not"),
    ("[fit]\n", "[extra]\nx = 1\n\n[fit]\n", r"\[extra\] is not a stitch card table"),
    ("dim = 24", 'dim = "24"', "source.dim must be of type int"),
    ("dim = 24", "dim = 25", "need"),
    ("n_train = 200", "n_train = 100", "anchors.count"),
    ('method = "procrustes"', 'method = "magic"', "fit.method"),
    ('weights = "stitch.safetensors"', 'weights = "../stitch.safetensors"', "plain file name"),
    ("normalize = true\n", "", "fit.normalize is missing"),
    ('format = "zoo.stitch"', 'format = "zoo.model"', "not a stitch card"),
    ("this is not TOML", "", "TOML"),
])
def test_tampered_cards_are_refused(tmp_path, old, new, match):
    _, card, _ = _saved(tmp_path)
    if old == "this is not TOML":
        card.write_text("[fit\nnot toml")
    else:
        _edit_card(card, old, new)
    with pytest.raises(CardError, match=match):
        Stitch.load(card)


def test_tampered_weights_are_refused(tmp_path):
    from safetensors.numpy import save_file

    _, card, _ = _saved(tmp_path)
    weights = card.parent / "stitch.safetensors"
    sha = sha256_file(weights)

    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")  # one float changed
    with pytest.raises(IntegrityError, match="sha256"):
        Stitch.load(card)

    weights.write_bytes(pickle.dumps({"weight": np.zeros((24, 16)), "bias": np.zeros(16)}))  # a pickle, re-pinned
    _edit_card(card, sha, sha256_file(weights))
    with pytest.raises(CardError, match="not a valid safetensors"):
        Stitch.load(card)

    cases = {"weight has shape": {"weight": np.zeros((16, 24), np.float32), "bias": np.zeros(16, np.float32)},
             "exactly 'weight' and 'bias'": {"weight": np.zeros((24, 16), np.float32),
                                             "bias": np.zeros(16, np.float32), "extra": np.zeros(1, np.float32)},
             "finite floats": {"weight": np.full((24, 16), np.nan, np.float32), "bias": np.zeros(16, np.float32)}}
    for match, tensors in cases.items():
        old = sha256_file(weights)
        save_file(tensors, str(weights))
        _edit_card(card, old, sha256_file(weights))
        with pytest.raises(CardError, match=match):
            Stitch.load(card)


def test_load_refuses_other_spaces_and_other_paths(tmp_path):
    _, card, _ = _saved(tmp_path)
    with pytest.raises(SpaceMismatchError, match="space-a"):
        Stitch.load(card, source="space-x")
    with pytest.raises(SpaceMismatchError):
        Stitch.load(card, target="space-a")
    with pytest.raises(CardError, match="stitch folder"):
        Stitch.load(card.parent / "stitch.safetensors")
    (card.parent / "stitch.safetensors").unlink()
    with pytest.raises(CardError, match="not found"):
        Stitch.load(card)


def test_unnamed_spaces_cannot_be_saved(tmp_path):
    x, y = _pair(20)
    with pytest.raises(InvalidInputError, match="name both spaces"):
        fit_stitch(x, y).save(tmp_path)


# ------------------------------------------------------------------------------------------ TOML writer

_scalars = st.one_of(st.text(max_size=40), st.booleans(), st.integers(-2**63, 2**63 - 1),
                     st.floats(allow_nan=False, allow_infinity=False))
_keys = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(top=st.dictionaries(_keys, _scalars, max_size=5),
       tables=st.dictionaries(_keys, st.dictionaries(_keys, _scalars, max_size=5), max_size=3))
def test_toml_writer_round_trips(top, tables):
    doc = top | {k: v for k, v in tables.items() if k not in top}
    assert tomllib.loads(dump_toml(doc)) == doc


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), da=st.integers(2, 12), db=st.integers(2, 12),
       method=st.sampled_from(["procrustes", "lstsq", "ridge", "affine"]), normalize=st.booleans())
def test_a_saved_and_loaded_stitch_gives_identical_outputs(tmp_path_factory, seed, da, db, method, normalize):
    rng = np.random.default_rng(seed)
    x, y, probe = rng.normal(size=(40, da)), rng.normal(size=(40, db)), rng.normal(size=(7, da))
    st_ = fit_stitch(x, y, method=method, normalize=normalize, source="space-a", target="space-b")
    folder = tmp_path_factory.mktemp("stitch")
    st_.save(folder)
    loaded = Stitch.load(folder)
    assert np.array_equal(loaded.apply(probe), st_.apply(probe))
    assert loaded.fit == st_.fit and (loaded.source, loaded.target) == (st_.source, st_.target)
