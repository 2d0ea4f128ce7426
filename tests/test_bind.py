"""Binding composites: OmniBind's layout and key names, its routing arithmetic, ConSE, and the adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from zoo.adapters.bind import BindNetwork, BindSpec, conse, label_texts, load_bind_weights
from zoo.errors import CardError, IntegrityError, UnsafeModelFileError

HEADS = 7
# OmniBind "Base": three WavCaps audio experts, EVA02-CLIP-E14+ for images, Uni3D for points and ImageBind (IB)
# whose heads sit in ``ib_projs``. Widths are shrunk (the real ones are 1024 in, 2048 hidden, 1536 out) so the
# test is fast; the layout and key names are the real ones.
D_IN, HIDDEN, OUT = 24, 32, 16
AT, VT, PVT = ["wavcaps_pt", "wavcaps_ft_aud", "wavcaps_ft_clo"], ["eva_e14p"], ["uni3d_l"]


def omnibind_base_options(d_in: int = D_IN) -> dict:
    experts = [{"id": e, "dim": d_in, "model": e} for e in AT + VT + PVT]
    experts.append({"id": "ib", "dim": d_in, "model": "imagebind", "group": "ib_projs"})
    return {
        "out_dim": OUT, "heads": HEADS, "hidden": HIDDEN, "experts": experts,
        "routes": {  # get_config('Base'): A_pred 0, V_pred 0, P_pred 0, T_pred [0, 3, 4], text scores x 10
            "audio": {"experts": AT + ["ib"], "router_inputs": AT[:1]},
            "image": {"experts": VT + PVT + ["ib"], "router_inputs": VT[:1], "renormalize": ["ib"]},
            "points": {"experts": PVT, "router_inputs": PVT[:1]},
            "text": {"experts": AT + VT + PVT + ["ib"], "router_inputs": [AT[0], VT[0], PVT[0]], "scale": 10.0,
                     "renormalize": ["ib"]},
        },
    }


def omnibind_key_names(n_projs: int, n_ib: int) -> set[str]:
    """The state-dict keys ATVP_router_wo18B has (projector heads and four routers), written out by hand."""
    keys = set()
    head = ["Head2.mlps.0.weight", "Head2.mlps.0.bias", "Head2.mlps.3.weight", "Head2.mlps.3.bias"]
    head += [f"Head2.mlps.{i}.{p}" for i in (1, 4)
             for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    keys |= {f"projs.{i}.{k}" for i in range(n_projs) for k in head}
    keys |= {f"ib_projs.{i}.{k}" for i in range(n_ib) for k in head}
    router = [f"router.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    router += [f"router.{i}.{p}" for i in (1, 4) for p in ("weight", "bias", "running_mean", "running_var",
                                                            "num_batches_tracked")]
    keys |= {f"{r}.{k}" for r in ("A_enc_router", "V_enc_router", "P_enc_router", "T_enc_router") for k in router}
    return keys


def randomized(net: BindNetwork, seed: int = 0) -> BindNetwork:
    """Random weights and batch-norm statistics, so eval-mode batch norm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    return net.eval()


def _seg_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([s.mean(dim=1, keepdim=True) for s in torch.split(x, size, dim=1)], dim=1)


def omnibind_reference(net: BindNetwork, modality: str, x: list[torch.Tensor]) -> torch.Tensor:
    """OmniBind's ATVP_router_wo18B.proj_* arithmetic, indexing heads the way its code does."""
    projs, ib = list(net.projs), list(net.ib_projs)
    a_n, v_n, p_n = len(AT) * HEADS, (len(VT) + len(PVT)) * HEADS, len(PVT) * HEADS
    if modality == "audio":
        ex = [projs[i](x[i // 7]) for i in range(a_n)] + [ib[i](x[-1]) for i in range(7)]
        w = F.softmax(net.A_enc_router(x[0]), dim=-1)
    elif modality == "image":
        unieva = F.normalize(torch.stack([ib[i](x[-1]) for i in range(7)], dim=1).mean(dim=1), dim=-1)
        ex = [projs[i + a_n](x[i // 7]) for i in range(v_n)] + [unieva]
        w = F.softmax(net.V_enc_router(x[0]), dim=-1)
    elif modality == "points":
        ex = [projs[i + a_n + v_n - p_n](x[i // 7]) for i in range(p_n)]
        w = F.softmax(net.P_enc_router(x[0]), dim=-1)
    else:
        unieva = F.normalize(torch.stack([ib[i](x[-1]) for i in range(7)], dim=1).mean(dim=1), dim=-1)
        ex = [projs[i](x[i // 7]) for i in range(len(projs))] + [unieva]
        w = F.softmax(net.T_enc_router(torch.cat([x[0], x[3], x[4]], dim=1)) * 10, dim=-1)
    stacked = torch.stack(ex, dim=1)
    stacked = _seg_mean(stacked, 7) if modality != "image" and modality != "text" else torch.cat(
        [_seg_mean(stacked[:, :-1], 7), stacked[:, -1:]], dim=1)
    return F.normalize((stacked * w.unsqueeze(2)).sum(dim=1), dim=-1)


@pytest.fixture(scope="module")
def base_net() -> BindNetwork:
    return randomized(BindNetwork(BindSpec.from_options(omnibind_base_options())))


def test_layout_has_exactly_omnibinds_key_names(base_net):
    assert set(base_net.state_dict()) == omnibind_key_names(n_projs=5 * HEADS, n_ib=HEADS)
    assert base_net.P_enc_router.router[6].out_features == 1  # Base: one point expert
    assert base_net.T_enc_router.router[0].in_features == 3 * D_IN


@pytest.mark.parametrize("modality", ["audio", "image", "points", "text"])
def test_routing_matches_omnibinds_arithmetic(base_net, modality):
    route = base_net.spec.routes[modality]
    g = torch.Generator().manual_seed(1)
    vectors = {e: F.normalize(torch.randn(5, D_IN, generator=g), dim=-1) for e in route.experts}
    with torch.no_grad():
        ours, weights = base_net(modality, vectors)
        ref = omnibind_reference(base_net, modality, [vectors[e] for e in route.experts])
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(weights.sum(dim=1), torch.ones(5))
    assert torch.allclose(ours.norm(dim=1), torch.ones(5))


def test_weights_round_trip_through_safetensors_and_torch_files(base_net, tmp_path):
    state = {f"module.{k}": v.clone() for k, v in base_net.state_dict().items()}
    state["module.projs.99.Head2.mlps.0.weight"] = torch.zeros(1)  # a part this spec does not declare: ignored
    pt = tmp_path / "base.pt"
    torch.save(state, pt)
    fresh = BindNetwork(base_net.spec)
    with pytest.raises(UnsafeModelFileError, match="safetensors"):
        load_bind_weights(fresh, pt, prefix="module.")
    load_bind_weights(fresh, pt, prefix="module.", allow_torch_pickle=True)
    for k, v in base_net.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    st = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base_net.state_dict().items()}, str(st))
    load_bind_weights(BindNetwork(base_net.spec), st)


def test_missing_or_misshapen_keys_are_refused(base_net, tmp_path):
    state = {k: v.clone() for k, v in base_net.state_dict().items()}
    del state["T_enc_router.router.0.weight"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(IntegrityError, match="lacks 1 key"):
        load_bind_weights(BindNetwork(base_net.spec), tmp_path / "missing.safetensors")
    state = {k: v.clone() for k, v in base_net.state_dict().items()}
    state["projs.0.Head2.mlps.0.weight"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "shape.safetensors"))
    with pytest.raises(IntegrityError, match="shape"):
        load_bind_weights(BindNetwork(base_net.spec), tmp_path / "shape.safetensors")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_in_a_torch_file_is_refused(base_net, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(UnsafeModelFileError):
        load_bind_weights(BindNetwork(base_net.spec), path, allow_torch_pickle=True)


@pytest.mark.parametrize(("change", "match"), [
    (lambda o: o.update(colour=1), "unknown field"),
    (lambda o: o["experts"].append(dict(o["experts"][0])), "unique"),
    (lambda o: o["routes"]["audio"].update(experts=["nobody"]), "unknown expert"),
    (lambda o: o["routes"]["audio"].update(router_inputs=["eva_e14p"]), "among its experts"),
    (lambda o: o["experts"][0].update(kind="magic"), "kind"),
    (lambda o: o["experts"][0].update(projector=False), "no projector"),
    (lambda o: o["routes"].update(smell={"experts": ["ib"]}), "not a modality"),
    (lambda o: o.update(out_dim=0), "out_dim"),
])
def test_bad_specs_are_refused_naming_the_field(change, match):
    opts = omnibind_base_options()
    change(opts)
    with pytest.raises(CardError, match=match):
        BindSpec.from_options(opts)


def test_unprojected_expert_is_its_own_space_and_one_expert_needs_no_router():
    spec = BindSpec.from_options({"out_dim": 4, "experts": [{"id": "t", "dim": 4, "model": "m", "projector": False}],
                                  "routes": {"text": {"experts": ["t"]}}})
    net = BindNetwork(spec)
    assert not list(net.parameters())
    x = torch.tensor([[3.0, 0, 0, 4.0]])
    out, w = net("text", {"t": x})
    assert torch.allclose(out, torch.tensor([[0.6, 0, 0, 0.8]])) and w.tolist() == [[1.0]]


def test_conse_is_the_probability_weighted_mean_of_the_top_labels():
    labels = np.eye(4, dtype=np.float32)
    probs = np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32)
    out = conse(probs, labels, top=2)
    expect = np.array([0.5, 0.3, 0, 0]) / np.linalg.norm([0.5, 0.3])
    assert np.allclose(out[0], expect, atol=1e-6)
    assert np.allclose(conse(probs, labels, top=1)[0], [1, 0, 0, 0])
    assert label_texts(["tabby_cat"], "a photo of a {label}") == ["a photo of a tabby cat"]
    with pytest.raises(CardError):
        label_texts(["x"], "no placeholder")


# ---------------------------------------------------------------- fitting
def _two_expert_problem(n: int = 400, seed: int = 0):
    """A target space and two experts that see it through different linear maps, one of them noisy."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(n, OUT)).astype(np.float32)
    clean = target @ rng.normal(size=(OUT, D_IN)).astype(np.float32)
    noise = rng.normal(size=(n, D_IN)).astype(np.float32) * 3
    noisy = target @ rng.normal(size=(OUT, D_IN)).astype(np.float32) + noise
    return target, {"clean": clean, "noisy": noisy}


def _spec_two_experts(routed: bool) -> BindSpec:
    route = {"experts": ["clean", "noisy"], "scale": 10.0} | ({"router_inputs": ["clean", "noisy"]} if routed else {})
    return BindSpec.from_options({
        "out_dim": OUT, "heads": 2, "hidden": 64, "router_hidden": 8, "router_width": 32,
        "experts": [{"id": "clean", "dim": D_IN, "model": "a"}, {"id": "noisy", "dim": D_IN, "model": "b"}],
        "routes": {"audio": route}})


def _recall_at_1(pred: np.ndarray, target: np.ndarray) -> float:
    sims = F.normalize(torch.from_numpy(pred), dim=-1) @ F.normalize(torch.from_numpy(target), dim=-1).T
    return float((sims.argmax(dim=1) == torch.arange(len(pred))).float().mean())


def test_fitted_projectors_retrieve_held_out_items_and_the_router_prefers_the_clean_expert(tmp_path):
    from zoo.adapters.bind_fit import fit_projectors, fit_router, save_bind_weights

    target, experts = _two_expert_problem()
    train, test = slice(0, 300), slice(300, 400)
    torch.manual_seed(0)
    net = BindNetwork(_spec_two_experts(routed=True))
    for eid, x in experts.items():
        losses = fit_projectors(net, eid, x[train], target[train], epochs=40, seed=1)
        assert losses[-1] < losses[0]
    with torch.no_grad():
        clean = net.project("clean", torch.from_numpy(experts["clean"][test])).numpy()
        noisy = net.project("noisy", torch.from_numpy(experts["noisy"][test])).numpy()
    assert _recall_at_1(clean, target[test]) > 0.75  # chance: 0.01
    assert _recall_at_1(clean, target[test]) > _recall_at_1(noisy, target[test])

    fit_router(net, "audio", {e: x[train] for e, x in experts.items()}, target[train], epochs=60)
    vecs = {e: torch.from_numpy(x[test]) for e, x in experts.items()}
    with torch.no_grad():
        out, w = net("audio", vecs)
    assert float(w[:, 0].mean()) > 0.6  # the router trusts the clean expert
    assert _recall_at_1(out.numpy(), target[test]) >= _recall_at_1(clean, target[test]) - 0.05

    path = save_bind_weights(net, tmp_path / "fit.safetensors")
    again = BindNetwork(net.spec)
    load_bind_weights(again, path)
    with torch.no_grad():
        assert torch.equal(again("audio", vecs)[0], out)


def test_fit_refuses_bad_pairs():
    from zoo.adapters.bind_fit import fit_projectors, fit_router
    from zoo.errors import InvalidInputError

    net = BindNetwork(_spec_two_experts(routed=False))
    with pytest.raises(InvalidInputError, match="same N"):
        fit_projectors(net, "clean", np.zeros((10, D_IN)), np.zeros((9, OUT)))
    bad = np.ones((10, D_IN))
    bad[3, 3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        fit_projectors(net, "clean", bad, np.ones((10, OUT)))
    with pytest.raises(InvalidInputError, match="no router"):
        fit_router(net, "audio", {}, np.zeros((10, OUT)))


def test_a_fitted_composite_saves_as_a_card_and_loads_by_name(tmp_path, monkeypatch):
    """save_composite -> zoo.load(name): the same network, its weights pinned by sha256; a tampered file refused."""
    import zoo
    from zoo import registry
    from zoo.adapters.bind_fit import fit_projectors, save_composite

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    registry.reload()
    options = {"out_dim": OUT, "heads": 2, "hidden": 32, "experts": [{"id": "e", "dim": D_IN, "model": "nobody"}],
               "routes": {"audio": {"experts": ["e"]}}}
    net = BindNetwork(BindSpec.from_options(options))
    target, experts = _two_expert_problem(n=60)
    fit_projectors(net, "e", experts["clean"], target, epochs=3)
    try:
        path = save_composite(net, "my-bind", modalities=["audio"], description="a test composite",
                              bind_options=options)
        assert path == tmp_path / "cards" / "my-bind.toml"
        loaded = zoo.load("my-bind")
        x = torch.from_numpy(experts["clean"][:5])
        with torch.no_grad():
            assert torch.equal(loaded.network("audio", {"e": x})[0], net("audio", {"e": x})[0])
        assert loaded.resolved.origin == "local-dir" and zoo.card("my-bind").offline_ready
        weights = tmp_path / "models" / "my-bind" / "bind.safetensors"
        weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
        with pytest.raises(IntegrityError):
            zoo.load("my-bind")
    finally:
        registry.reload()
