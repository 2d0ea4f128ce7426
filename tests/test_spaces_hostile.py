"""Hostile files and arguments around spaces: saved stitches, user cards, similarity and the zoo.align utilities.

One damaged file never hides the valid ones (it is skipped with a warning naming it), a stitch card
edited after saving is refused, and wrong arguments are typed zoo errors naming the argument.
"""

from __future__ import annotations

import json
import textwrap
import tomllib
import warnings

import numpy as np
import pytest

import zoo
from zoo import registry, stitching
from zoo.align import (
    AnchorSet,
    RelativeProjector,
    Stitch,
    evaluate_stitch,
    fit_stitch,
    mutual_knn,
    recall_at_k,
    relative_projection,
    relative_representation,
    retrieval_metrics,
    select_anchors,
)
from zoo.align._files import dump_toml
from zoo.embeddings import Embeddings
from zoo.errors import CardError, IntegrityError, InvalidInputError, RegistryError, SpaceMismatchError, ZooError


def _emb(vectors, space: str) -> Embeddings:
    return Embeddings(np.asarray(vectors, np.float32), space=space, model=f"{space}-model", modality="text",
                      normalized=False)


def _pair(seed: int = 0, n: int = 60, da: int = 6, db: int = 5):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    return (z @ rng.normal(size=(4, da))).astype(np.float32), (z @ rng.normal(size=(4, db))).astype(np.float32)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh ZOO_HOME with empty stitch and card registries; the registry is re-read afterwards."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(stitching, "_stitches", {})
    monkeypatch.setattr(stitching, "_scanned", set())
    registry.reload()
    yield tmp_path / "home"
    monkeypatch.undo()
    registry.reload()


def _save(name: str, seed: int = 0, **kw) -> tuple[Stitch, object]:
    x, y = _pair(seed)
    st = fit_stitch(x[:40], y[:40], source=f"space-a{seed}", target=f"space-b{seed}", test=(x[40:], y[40:]), **kw)
    return st, st.save(stitching.stitch_dir() / name)


# ------------------------------------------------------------------------------ 1. damaged saved stitches


@pytest.mark.parametrize("damage", ["not-toml", "no-weights", "bad-weights", "empty", "folder"])
def test_one_damaged_saved_stitch_hides_no_valid_one(home, damage):
    first, _ = _save("a-first", seed=1)
    last, _ = _save("z-last", seed=2)
    _, bad = _save("m-broken", seed=3)
    if damage == "not-toml":
        bad.write_text("[fit\nnot toml")
    elif damage == "no-weights":
        (bad.parent / "stitch.safetensors").unlink()
    elif damage == "bad-weights":
        (bad.parent / "stitch.safetensors").write_bytes(b"\x80\x04garbage")
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad.unlink()
        bad.mkdir()  # a folder where the card should be
    with pytest.warns(UserWarning, match=r"m-broken") as caught:
        found = stitching.registered_stitches()
    assert {"a-first", "z-last"} <= set(found) and "m-broken" not in found
    assert any(str(bad) in str(w.message) or "m-broken" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second scan is not poisoned, and does not warn again
        again = stitching.registered_stitches()
    assert {"a-first", "z-last"} <= set(again)
    assert np.array_equal(stitching.load_stitch("a-first").weight, first.weight)
    assert np.array_equal(stitching.load_stitch("z-last").weight, last.weight)
    assert stitching.find_stitch("space-a2", "space-b2")[0] == "z-last"
    if damage != "folder":  # asking for the damaged one by name gives its typed error
        with pytest.raises((CardError, IntegrityError), match="m-broken"):
            stitching.load_stitch("m-broken")


def test_a_fixed_stitch_is_found_after_rescan_and_similarity_keeps_working(home):
    _, good = _save("good", seed=1)
    _, bad = _save("bad", seed=2)
    text = bad.read_text()
    bad.write_text("junk")
    with pytest.warns(UserWarning, match="bad"):
        a = _emb(np.ones((2, 6)), "space-a1")
        b = _emb(np.ones((3, 5)), "space-b1")
        assert zoo.similarity(a, b).stitch == "good"
    bad.write_text(text)
    assert "bad" not in stitching.registered_stitches()
    stitching.rescan()
    assert {"good", "bad"} <= set(stitching.registered_stitches())


def test_stitch_names_are_one_safe_folder(home):
    st, _ = _save("ok", seed=1)
    for name in ("../escape", "a/b", "", ".hidden", "x" * 300, 5):
        with pytest.raises(InvalidInputError):
            stitching.register_stitch(st, name)
        with pytest.raises(InvalidInputError):
            stitching.load_stitch(name)
    assert stitching.default_name("hf-hub:org/name", "local-dir:/x y") == "hf-hub_org_name__local-dir__x_y"
    with pytest.raises(InvalidInputError, match="Stitch"):
        stitching.register_stitch("not a stitch", "x")


# ---------------------------------------------------------------------------------- 2. malformed user cards

_GOOD_CARD = textwrap.dedent('''
    adapter = "text"
    modalities = ["text"]
    dim = 8
    description = "a user card"
    license = "mit"
    offline_note = "test"
    [[sources]]
    kind = "hub"
    repo = "org/user-model"
    revision = "0123456789abcdef0123456789abcdef01234567"
''')

_BAD_CARDS = {
    "not-toml": b"adapter = \n",
    "not-utf8": b"\xff\xfe\x00adapter",
    "repo-not-a-string": _GOOD_CARD.replace('repo = "org/user-model"', "repo = 5").encode(),
    "subdir-not-a-string": _GOOD_CARD.replace('kind = "hub"', 'kind = "bundled"\nsubdir = 3\nsha256 = {}').encode(),
    "unknown-field": (_GOOD_CARD + "poolling = 'mean'\n").encode(),
    "all-minilm-l6-v2": _GOOD_CARD.encode(),  # a user card that clashes with a shipped card's name
}


@pytest.mark.parametrize("bad", sorted(_BAD_CARDS))
def test_one_malformed_user_card_breaks_nothing_else(home, bad):
    cards = home / "cards"
    cards.mkdir(parents=True)
    (cards / "user-model.toml").write_text(_GOOD_CARD)
    (cards / f"{bad}.toml").write_bytes(_BAD_CARDS[bad])
    registry.reload()
    with pytest.warns(UserWarning, match=rf"{bad}\.toml") as caught:
        names = zoo.list_models()
    assert "user-model" in names and "all-minilm-l6-v2" in names and "e5-small-v2" in names
    assert any(type(w.message) is UserWarning and "Error" in str(w.message) for w in caught)  # it names the error
    assert zoo.card("user-model").description == "a user card"
    assert zoo.card("e5-small-v2").name == "e5-small-v2"
    with pytest.raises(zoo.UnknownModelError):
        zoo.load("no-such-model-anywhere")
    if bad == "all-minilm-l6-v2":
        assert zoo.card(bad).path.endswith("zoo/cards/all-minilm-l6-v2.toml")  # the shipped card stays
    else:
        with pytest.raises(CardError, match=rf"{bad}\.toml"):
            zoo.card(bad)
        with pytest.raises(CardError):
            zoo.load(bad)


def test_a_user_card_path_that_is_not_a_file_is_skipped(home):
    cards = home / "cards"
    (cards / "folder.toml").mkdir(parents=True)
    registry.reload()
    with pytest.warns(UserWarning, match="folder.toml"):
        assert "e5-small-v2" in zoo.list_models()
    with pytest.raises(CardError, match="regular file"):
        zoo.card("folder")


def test_list_models_and_card_refuse_non_string_arguments(home):
    with pytest.raises(InvalidInputError, match="pattern"):
        zoo.list_models(5)
    with pytest.raises(InvalidInputError):
        zoo.card(None)


# ------------------------------------------------------------------------------- 3. sealed stitch cards


@pytest.mark.parametrize(("old", "new"), [
    ("normalize = true", "normalize = false"),
    ('space = "space-b1"', 'space = "space-c"'),
    ('space = "space-a1"', 'space = "space-z"'),
    ('model = "', 'model = "x'),
    ("recall_at_1 = ", "recall_at_1 = 0.99\nold_recall_at_1 = "),
    ('version = "1"', 'version = "2"'),
])
def test_a_stitch_card_edited_after_saving_is_refused(home, old, new):
    anchors = AnchorSet(tuple(f"item {i}" for i in range(40)))
    _, card = _save("edited", seed=1, anchors=anchors)
    text = card.read_text()
    assert old in text, old
    edited = text.replace(old, new, 1)
    if "old_recall_at_1" in edited:  # keep the card valid: only the figure changes
        value = tomllib.loads(text)["quality"]["recall_at_1"]
        edited = text.replace(f"recall_at_1 = {value!r}", "recall_at_1 = 0.999", 1)
        assert edited != text
    card.write_text(edited)
    with pytest.raises(IntegrityError, match="edited after saving") as err:
        Stitch.load(card)
    assert err.value.path == str(card)
    with pytest.warns(UserWarning, match="IntegrityError"):
        assert "edited" not in stitching.registered_stitches()
    with pytest.raises(IntegrityError):
        stitching.load_stitch("edited")


def test_the_seal_round_trips_and_unsealed_cards_need_consent(home):
    st, card = _save("sealed", seed=1)
    doc = tomllib.loads(card.read_text())
    assert len(doc["content_sha256"]) == 64
    loaded = Stitch.load(card)
    probe = np.random.default_rng(5).normal(size=(4, 6))
    assert np.array_equal(loaded(probe), st(probe))
    del doc["content_sha256"]  # what an older zoo wrote
    card.write_text(dump_toml(doc))
    with pytest.raises(CardError, match="allow_unsealed"):
        Stitch.load(card)
    old = Stitch.load(card, allow_unsealed=True)
    assert np.array_equal(old(probe), st(probe))
    resealed = old.save(card.parent)
    assert Stitch.load(resealed).fit == st.fit


def test_file_anchors_that_changed_on_disk_are_refused(home, tmp_path):
    class Model:
        def __init__(self, space):
            self.space = space

        def embed(self, items, **_):
            rng = np.random.default_rng(len(items))
            return _emb(rng.normal(size=(len(items), 4)), self.space)

    files = []
    for i in range(4):
        files.append(tmp_path / f"f{i}.bin")
        files[-1].write_bytes(bytes([i]) * 10)
    anchors = AnchorSet.from_files(files)
    files[2].write_bytes(b"changed")
    with pytest.raises(IntegrityError, match="f2.bin"):
        zoo.stitch(Model("sa"), Model("sb"), anchors=anchors)


# ------------------------------------------------------------------------------------ 4. wrong arguments

_E = _emb(np.ones((2, 4)), "s")
_WRONG = [None, 5, 2.5, "text", b"bytes", [1, 2], [[1, 2], [3]], {"a": 1}, object(), np.ones((2, 3, 4)),
          np.array(["a", "b"]), [[np.nan] * 4]]


@pytest.mark.parametrize("value", _WRONG, ids=repr)
def test_similarity_wrong_arguments_are_typed_and_named(value):
    for args, side in (((_E, value), "b"), ((value, _E), "a")):
        with pytest.raises(InvalidInputError, match=rf"\b{side}\b"):
            zoo.similarity(*args)


def test_similarity_mismatches_say_what_is_wrong():
    with pytest.raises(InvalidInputError, match="a has dim 4, b has dim 3"):
        zoo.similarity(_E, np.ones((2, 3)))
    with pytest.raises(SpaceMismatchError):
        zoo.similarity(_E, _emb(np.ones((2, 4)), "other-space"), stitch=False)
    for bad in (np.array(["cosine"]), 5, "l2"):
        with pytest.raises(InvalidInputError, match="metric"):
            zoo.similarity(_E, _E, metric=bad)
    with pytest.raises(InvalidInputError, match="stitch"):
        zoo.similarity(_E, _E, stitch=5)
    for vectors in (None, [1, 2], np.ones(3), np.array([["a"]])):
        with pytest.raises(InvalidInputError, match="vectors"):
            Embeddings(vectors, space="s", model="m", modality="text", normalized=False)


def _calls():
    x, y = _pair(7, n=30, da=4, db=4)
    st = fit_stitch(x, y, source="s", target="t")
    return {
        "zoo.stitch(model_a)": lambda v: zoo.stitch(v, v, anchors=["a", "b", "c"]),
        "zoo.stitch(anchors)": lambda v: zoo.stitch(None, None, anchors=v),
        "zoo.stitch(name)": lambda v: zoo.stitch(None, None, anchors=["a", "b"], name=v),
        "fit_stitch(X)": lambda v: fit_stitch(v, y),
        "fit_stitch(alpha)": lambda v: fit_stitch(x, y, method="ridge", alpha=v),
        "fit_stitch(method)": lambda v: fit_stitch(x, y, method=v),
        "fit_stitch(anchors)": lambda v: fit_stitch(x, y, anchors=v),
        "fit_stitch(test)": lambda v: fit_stitch(x, y, test=v),
        "evaluate_stitch(stitch)": lambda v: evaluate_stitch(v, x, y),
        "evaluate_stitch(knn_k)": lambda v: evaluate_stitch(st, x, y, knn_k=v),
        "Stitch.apply": lambda v: st.apply(v),
        "Stitch.save": lambda v: st.save(v),
        "Stitch.load": lambda v: Stitch.load(v),
        "Stitch.with_quality": lambda v: st.with_quality(v),
        "join": lambda v: stitching.join(v, _E),
        "find_stitch": lambda v: stitching.find_stitch(v, v),
        "AnchorSet(items)": lambda v: AnchorSet(v),
        "AnchorSet(labels)": lambda v: AnchorSet(("a",), labels=v),
        "AnchorSet.from_files": lambda v: AnchorSet.from_files(v),
        "AnchorSet.select(n)": lambda v: AnchorSet.select([str(i) for i in range(30)], x, v),
        "AnchorSet.load": lambda v: AnchorSet.load(v),
        "select_anchors(n)": lambda v: select_anchors(x, v),
        "select_anchors(seed)": lambda v: select_anchors(x, 3, seed=v),
        "select_anchors(strategy)": lambda v: select_anchors(x, 3, strategy=v),
        "relative_projection(x)": lambda v: relative_projection(v, x),
        "relative_projection(center)": lambda v: relative_projection(x, x, center=v),
        "relative_representation(normalization)": lambda v: relative_representation(x, x, normalization=v),
        "RelativeProjector(mean)": lambda v: RelativeProjector(x, mean=v),
        "RelativeProjector.load": lambda v: RelativeProjector.load(v),
        "recall_at_k(k)": lambda v: recall_at_k(x, y, np.arange(30), k=v),
        "retrieval_metrics(ks)": lambda v: retrieval_metrics(x, y, np.arange(30), ks=v),
        "retrieval_metrics(relevance)": lambda v: retrieval_metrics(x, y, relevance=v),
        "mutual_knn(k)": lambda v: mutual_knn(x, y, k=v),
    }


@pytest.mark.parametrize("call", sorted(_calls()))
def test_stitch_and_anchor_utilities_raise_typed_errors_for_wrong_arguments(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a wrong value that is a valid relative path ("text") writes here
    fn = _calls()[call]
    for value in _WRONG:
        try:
            fn(value)
        except ZooError:
            pass
        except Exception as exc:  # noqa: BLE001 - the point: nothing but zoo errors
            pytest.fail(f"{call} with {value!r:.40}: {type(exc).__name__}: {exc}")


def test_wrong_arguments_name_the_argument():
    x, y = _pair(8, n=30, da=4, db=4)
    with pytest.raises(InvalidInputError, match="alpha"):
        fit_stitch(x, y, method="ridge", alpha="1")
    with pytest.raises(InvalidInputError, match="knn_k"):
        evaluate_stitch(fit_stitch(x, y), x, y, knn_k="3")
    with pytest.raises(InvalidInputError, match="model_a"):
        zoo.stitch(None, "all-minilm-l6-v2", anchors=["a", "b"])
    with pytest.raises(InvalidInputError, match="anchors"):
        fit_stitch(x, y, anchors=["a"] * 30)
    with pytest.raises(InvalidInputError, match="seed"):
        select_anchors(x, 3, seed="0")


def test_anchor_files_with_hostile_fields_are_card_errors(tmp_path):
    good = AnchorSet(("a", "b")).save(tmp_path / "a.json")
    doc = json.loads(good.read_text())
    for change in ({"version": 3}, {"selection": [1]}, {"hash": None}, {"items": "ab"}, {"labels": [1, 2]},
                   {"kind": ["text"]}):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(doc | change))
        with pytest.raises(CardError):
            AnchorSet.load(path)
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CardError):
        AnchorSet.load(nested)
    with pytest.raises(CardError, match="regular file"):
        AnchorSet.load(tmp_path)


def test_registry_errors_stay_registry_errors(home):
    st, _ = _save("one", seed=1)
    stitching.register_stitch(st, "twice")
    with pytest.raises(RegistryError):
        stitching.register_stitch(st, "twice")


# ---------------------------------------------------------------------------------------------- sealed projectors
def _rewrite_projector(path, change_meta=None, change_tensors=None, drop_seal=False):
    """Write the projector file again with edited metadata or tensors, keeping (or dropping) its old seal."""
    from safetensors.numpy import save_file

    from zoo.align._files import read_safetensors

    meta, tensors = read_safetensors(path)
    meta = dict(meta) | (change_meta or {})
    tensors = {k: np.array(v) for k, v in tensors.items()}
    if change_tensors:
        change_tensors(tensors)
    if drop_seal:
        meta.pop("content_sha256")
        meta["format_version"] = "1"
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(("what", "edit"), [
    ("similarity", {"change_meta": {"similarity": "euclidean"}}),
    ("center", {"change_meta": {"center": "true"}}),
    ("space", {"change_meta": {"space": "another-model"}}),
    ("an anchor", {"change_tensors": lambda t: t["anchors"].__setitem__((0, 0), t["anchors"][0, 0] + 0.5)}),
    ("the fitted std", {"change_tensors": lambda t: t["std"].__setitem__(0, t["std"][0] * 2)}),
])
def test_a_projector_edited_after_saving_is_refused(tmp_path, what, edit):
    a = np.random.default_rng(0).normal(size=(12, 6)).astype(np.float32)
    path = RelativeProjector(a, normalization="standardize").fit(a).save(tmp_path / "p.safetensors")
    assert RelativeProjector.load(path).transform(a).shape == (12, 12)
    _rewrite_projector(path, **edit)
    with pytest.raises(IntegrityError, match="differ from its seal"):
        RelativeProjector.load(path)


def test_an_unsealed_projector_loads_only_when_allowed_and_reseals(tmp_path):
    a = np.random.default_rng(1).normal(size=(10, 5)).astype(np.float32)
    p = RelativeProjector(a, similarity="angular")
    path = p.save(tmp_path / "old.safetensors")
    _rewrite_projector(path, drop_seal=True)  # what an older zoo wrote
    with pytest.raises(CardError, match="unsealed relative projector"):
        RelativeProjector.load(path)
    old = RelativeProjector.load(path, allow_unsealed=True)
    assert np.array_equal(old.transform(a), p.transform(a))
    resealed = RelativeProjector.load(old.save(tmp_path / "new.safetensors"))
    assert np.array_equal(resealed.transform(a), p.transform(a))
