"""adamupdate, rmspropupdate, sgdmupdate, dlupdate: MATLAB's formulas (API.md §6), in place
on flat buffers, on both backends."""

import numpy as np
import pytest

import lgc
from lgc import LgcError, Table
from lgc.updates import adamupdate, dlupdate, rmspropupdate, sgdmupdate


def _problem(dtype=np.float32, seed=0, rows=4):
    rng = np.random.default_rng(seed)
    params = {"W": lgc.dlarray(rng.normal(size=(rows, 3)).astype(dtype)),
              "b": lgc.dlarray(rng.normal(size=(rows, 1)).astype(dtype), )}
    grads = [{k: rng.normal(size=v.shape).astype(dtype) for k, v in params.items()}
             for _ in range(5)]
    return params, grads


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12}


@pytest.mark.parametrize("rows", [4, 100_000], ids=["small", "threaded"])  # 2^18 elements
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_five_steps_match_formula(backend, dtype, rows):
    params, grads = _problem(dtype, rows=rows)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    ref = {k: np.asarray(v).astype(np.float64) for k, v in params.items()}
    m = {k: 0.0 for k in ref}
    v = {k: 0.0 for k in ref}
    avg = avg_sq = None
    for t, g in enumerate(grads, start=1):
        params, avg, avg_sq = adamupdate(params, g, avg, avg_sq, t, lr, b1, b2, eps)
        for k in ref:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            ref[k] = ref[k] - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[k] / (
                np.sqrt(v[k]) + eps)
    for k in ref:
        np.testing.assert_allclose(np.asarray(params[k]), ref[k], **_tol(dtype))
        np.testing.assert_allclose(np.asarray(avg[k]), m[k], **_tol(dtype))
        np.testing.assert_allclose(np.asarray(avg_sq[k]), v[k], **_tol(dtype))
        assert params[k].dtype == dtype


@pytest.mark.parametrize("given", ["contiguous", "transposed view", "float64"])
def test_adam_on_one_parameter_reads_its_gradient_in_place(backend, given):
    """A group of one parameter hands its gradient to the kernel as it is (no copy into the
    flat buffer); a strided or float64 gradient is converted first. Same numbers either way."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 4)).astype(np.float32)
    g = rng.normal(size=(5, 4))
    grad = {"contiguous": g.astype(np.float32), "transposed view": g.T.astype(np.float32).T,
            "float64": g}[given]
    before = grad.copy()
    p, m, v = adamupdate(w, grad, None, None, 1, 0.1)
    m_ref = 0.1 * g
    v_ref = 0.001 * g * g
    ref = w - 0.1 * np.sqrt(0.001) / 0.1 * m_ref / (np.sqrt(v_ref) + 1e-8)
    np.testing.assert_allclose(np.asarray(p), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(m), m_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(grad, before)  # the gradient is only read


def test_updated_objects_are_made_once_and_follow_the_buffers(backend):
    """After the first call, adamupdate hands back the same dlarray objects every time
    (views of the flat buffers it updates in place, wrapped once), with each leaf's format;
    a new structure around them (other containers) costs nothing either. Parameters given
    with another format come back with that format."""
    params, grads = _problem()
    params = {"W": lgc.dlarray(np.asarray(params["W"]), "CB"), "b": params["b"]}
    p1, m1, v1 = adamupdate(params, grads[0], None, None, 1)
    p2, m2, v2 = adamupdate(p1, grads[1], m1, v1, 2)
    assert p2 is not p1 and all(p2[k] is p1[k] and m2[k] is m1[k] for k in p1)
    assert p2["W"].fmt == "CB" and np.shares_memory(np.asarray(p2["W"]), np.asarray(p1["W"]))
    before = np.asarray(p2["b"]).copy()
    p3, _, _ = adamupdate({"W": p2["W"], "b": p2["b"]}, grads[2], m2, v2, 3)
    assert p3["b"] is p2["b"] and not np.array_equal(np.asarray(p3["b"]), before)
    relabeled = {"W": lgc.dlarray(np.asarray(p3["W"]), "SS"), "b": p3["b"]}
    p4, _, _ = adamupdate(relabeled, grads[3], m2, v2, 4)
    assert p4["W"].fmt == "SS" and p4["b"].fmt == ""


def test_rmsprop_five_steps_match_formula(backend):
    params, grads = _problem()
    lr, rho, eps = 0.01, 0.9, 1e-8
    ref = {k: np.asarray(v).astype(np.float64) for k, v in params.items()}
    v = {k: 0.0 for k in ref}
    sq = None
    for g in grads:
        params, sq = rmspropupdate(params, g, sq, lr, rho, eps)
        for k in ref:
            v[k] = rho * v[k] + (1 - rho) * g[k] ** 2
            ref[k] = ref[k] - lr * g[k] / (np.sqrt(v[k]) + eps)
    for k in ref:
        np.testing.assert_allclose(np.asarray(params[k]), ref[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(sq[k]), v[k], rtol=1e-5, atol=1e-7)


def test_sgdm_five_steps_match_formula(backend):
    params, grads = _problem()
    lr, mu = 0.05, 0.9
    ref = {k: np.asarray(v).astype(np.float64) for k, v in params.items()}
    vel_ref = {k: 0.0 for k in ref}
    vel = None
    for g in grads:
        params, vel = sgdmupdate(params, g, vel, lr, mu)
        for k in ref:
            vel_ref[k] = mu * vel_ref[k] - lr * g[k]
            ref[k] = ref[k] + vel_ref[k]
    for k in ref:
        np.testing.assert_allclose(np.asarray(params[k]), ref[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(vel[k]), vel_ref[k], rtol=1e-5, atol=1e-6)


def test_defaults_are_matlabs():
    params, grads = _problem(np.float64)
    p1, *_ = adamupdate(params, grads[0], None, None, 1)
    p2, *_ = adamupdate(params, grads[0], None, None, 1, 0.001, 0.9, 0.999, 1e-8)
    np.testing.assert_array_equal(np.asarray(p1["W"]), np.asarray(p2["W"]))
    s1, _ = sgdmupdate(params, grads[0], None)
    s2, _ = sgdmupdate(params, grads[0], None, 0.01, 0.9)
    np.testing.assert_array_equal(np.asarray(s1["b"]), np.asarray(s2["b"]))
    r1, _ = rmspropupdate(params, grads[0], None)
    r2, _ = rmspropupdate(params, grads[0], None, 0.001, 0.9, 1e-8)
    np.testing.assert_array_equal(np.asarray(r1["b"]), np.asarray(r2["b"]))


def test_second_call_updates_the_flat_buffer_in_place():
    params, grads = _problem()
    p1, vel1 = sgdmupdate(params, grads[0], None)
    w1 = np.asarray(p1["W"])
    assert np.asarray(p1["W"]).base is np.asarray(p1["b"]).base  # one flat buffer
    p2, vel2 = sgdmupdate(p1, grads[1], vel1)
    assert np.asarray(p2["W"]) is w1
    assert np.asarray(vel2["b"]) is np.asarray(vel1["b"])


def test_user_arrays_are_not_modified():
    params, grads = _problem()
    before = np.asarray(params["W"]).copy()
    sgdmupdate(params, grads[0], None)
    np.testing.assert_array_equal(np.asarray(params["W"]), before)


def test_table_and_single_dlarray_params():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(2, 2)).astype(np.float32)
    tab = Table(["fc", "fc"], ["Weights", "Bias"], [lgc.dlarray(w), lgc.dlarray(np.zeros((2, 1),
                                                                                         np.float32))])
    g = tab.with_values([np.ones((2, 2), np.float32), np.ones((2, 1), np.float32)])
    new, vel = sgdmupdate(tab, g, None, 0.1, 0.0)
    assert isinstance(new, Table) and new.Layer == ["fc", "fc"]
    np.testing.assert_allclose(np.asarray(new["fc", "Weights"]), w - 0.1)
    x, v = sgdmupdate(lgc.dlarray(w, "CB"), np.ones((2, 2), np.float32), None, 0.1, 0.0)
    assert x.fmt == "CB"
    np.testing.assert_allclose(np.asarray(x), w - 0.1)


def test_learn_rate_factors_multiply_the_rate():
    class Params(dict):
        def learn_rate_factors(self):
            return [2.0, 0.0]

    lgc.tree.register_node(Params, lambda p: (list(p.items()), None),
                           lambda aux, children: Params(children))

    p = Params(W=lgc.dlarray(np.ones((2, 2))), b=lgc.dlarray(np.ones((2, 1))))
    g = {"W": np.ones((2, 2)), "b": np.ones((2, 1))}
    new, _ = sgdmupdate(p, g, None, 0.1, 0.0)
    np.testing.assert_allclose(np.asarray(new["W"]), 0.8)
    np.testing.assert_allclose(np.asarray(new["b"]), 1.0)


def test_dlupdate_applies_fn_to_each_parameter():
    params, grads = _problem(np.float64)
    calls = []

    def sgd(p, g):
        calls.append(1)
        return p - 0.1 * g

    new = dlupdate(sgd, params, grads[0])
    new2 = dlupdate(sgd, new, grads[1])
    for k in params:
        np.testing.assert_allclose(np.asarray(new2[k]),
                                   np.asarray(params[k]) - 0.1 * (grads[0][k] + grads[1][k]))
    assert len(calls) == 2  # traced once (two parameters), then reused
    l2 = dlupdate(lambda p: lgc.sum(p * p), params)
    np.testing.assert_allclose(float(l2["b"]), float(np.sum(np.asarray(params["b"]) ** 2)))


@pytest.mark.parametrize("call, match", [
    (lambda p, g: adamupdate(p, g, None, None, 0), "iteration"),
    (lambda p, g: adamupdate(p, g, None, None, 1, -1.0), "learnRate"),
    (lambda p, g: adamupdate(p, g, None, None, 1, 0.1, 1.5), "gradDecay"),
    (lambda p, g: sgdmupdate(p, {"W": g["W"]}, None), "grad has 1 arrays"),
    (lambda p, g: sgdmupdate(p, {"W": g["W"].T, "b": g["b"]}, None), r"shape \(3, 4\)"),
    (lambda p, g: rmspropupdate(p, g, None, 0.1, 2.0), "sqGradDecay"),
])
def test_bad_arguments_name_the_function(call, match):
    params, grads = _problem()
    with pytest.raises(LgcError, match=match):
        call(params, grads[0])
