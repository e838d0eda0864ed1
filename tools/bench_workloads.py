"""The benchmark workloads of tools/bench.py, each written once per framework on the same data.

A workload builds a `Problem` (parameters in lgc's MATLAB layout, the batch, the lgc loss) and
knows how to express the same math in PyTorch and in JAX with the parameters converted once
(conv weights h×w×Cin×Cout → Cout×Cin×h×w, images h×w×C×N → N×C×h×w, sequences C×N×T →
T×N×C). Every contender then runs the same full train step: forward, loss, backward, Adam.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import lgc


@dataclass
class Problem:
    params: object  # dict of float32 arrays (MATLAB layout) or a dlnetwork
    batch: tuple  # the lgc step's arguments (dlarrays)
    loss: object  # lgc loss_fn(params, *batch) -> loss, or (loss, state) for a dlnetwork
    arrays: dict = field(default_factory=dict)  # raw numpy inputs for the peers: x, labels
    n_params: int = 0


def _rng(seed=0):
    return np.random.default_rng(seed)


def _he(rng, *shape, fan_in):
    return (rng.normal(size=shape) * np.sqrt(2 / fan_in)).astype(np.float32)


def _targets(rng, classes, batch):
    labels = rng.integers(0, classes, batch)
    return labels, np.eye(classes, dtype=np.float32)[:, labels]


def _count(params):
    if isinstance(params, dict):
        return sum(int(np.size(v)) for v in params.values())
    return sum(int(np.size(v)) for v in params.Learnables.Value)


# --- MLP ----------------------------------------------------------------------------------------


def mlp_problem(quick=False, sizes=None, batch=None, seed=0):
    sizes = sizes or ((16, 32, 32, 10) if quick else (64, 256, 256, 10))
    batch = batch or (8 if quick else 128)
    rng = _rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = _he(rng, n_out, n_in, fan_in=n_in)
        params[f"b{i}"] = np.zeros((n_out, 1), np.float32)
    x = rng.normal(size=(sizes[0], batch)).astype(np.float32)
    labels, t = _targets(rng, sizes[-1], batch)
    return Problem(params, (lgc.dlarray(x, "CB"), lgc.dlarray(t, "CB")), mlp_loss,
                   {"x": x, "labels": labels}, _count(params))


def depth_problem(depth, quick=False):
    """An MLP of `depth` fully connected layers (width 64): compile time against depth."""
    width = 16 if quick else 64
    return mlp_problem(quick, sizes=(width,) * depth + (10,), batch=8 if quick else 32)


def mlp_loss(p, X, T):  # noqa: N803
    n = len(p) // 2
    h = X
    for i in range(n):
        h = lgc.fullyconnect(h, p[f"W{i}"], p[f"b{i}"])
        if i < n - 1:
            h = lgc.relu(h)
    return lgc.crossentropy(lgc.softmax(h), T)


# --- LeNet-5 ------------------------------------------------------------------------------------


def lenet_problem(quick=False, seed=0):
    batch = 4 if quick else 64
    rng = _rng(seed)
    params = {"c1w": _he(rng, 5, 5, 1, 6, fan_in=25), "c1b": np.zeros(6, np.float32),
              "c2w": _he(rng, 5, 5, 6, 16, fan_in=150), "c2b": np.zeros(16, np.float32),
              "f1w": _he(rng, 120, 400, fan_in=400), "f1b": np.zeros((120, 1), np.float32),
              "f2w": _he(rng, 84, 120, fan_in=120), "f2b": np.zeros((84, 1), np.float32),
              "f3w": _he(rng, 10, 84, fan_in=84), "f3b": np.zeros((10, 1), np.float32)}
    x = rng.normal(size=(28, 28, 1, batch)).astype(np.float32)
    labels, t = _targets(rng, 10, batch)
    return Problem(params, (lgc.dlarray(x, "SSCB"), lgc.dlarray(t, "CB")), lenet_loss,
                   {"x": x, "labels": labels}, _count(params))


def lenet_loss(p, X, T):  # noqa: N803
    h = lgc.maxpool(lgc.relu(lgc.dlconv(X, p["c1w"], p["c1b"], Padding=2)), 2, Stride=2)
    h = lgc.maxpool(lgc.relu(lgc.dlconv(h, p["c2w"], p["c2b"])), 2, Stride=2)
    h = lgc.relu(lgc.fullyconnect(h, p["f1w"], p["f1b"]))
    h = lgc.relu(lgc.fullyconnect(h, p["f2w"], p["f2b"]))
    return lgc.crossentropy(lgc.softmax(lgc.fullyconnect(h, p["f3w"], p["f3b"])), T)


# --- conv-batchnorm-relu CNN (a dlnetwork: batchnorm state is carried) ---------------------------


def cnn_problem(quick=False, seed=0):
    side, batch = (8, 4) if quick else (32, 64)
    lgc.rng(seed)
    net = lgc.dlnetwork([
        lgc.imageInputLayer([side, side, 3], Normalization="none", Name="in"),
        lgc.convolution2dLayer(3, 16, Padding="same", Name="conv1"),
        lgc.batchNormalizationLayer(Name="bn1"), lgc.reluLayer(Name="relu1"),
        lgc.maxPooling2dLayer(2, Stride=2, Name="pool1"),
        lgc.convolution2dLayer(3, 32, Padding="same", Name="conv2"),
        lgc.batchNormalizationLayer(Name="bn2"), lgc.reluLayer(Name="relu2"),
        lgc.maxPooling2dLayer(2, Stride=2, Name="pool2"),
        lgc.fullyConnectedLayer(10, Name="fc"), lgc.softmaxLayer(Name="softmax")])
    rng = _rng(seed)
    x = rng.normal(size=(side, side, 3, batch)).astype(np.float32)
    labels, t = _targets(rng, 10, batch)
    return Problem(net, (lgc.dlarray(x, "SSCB"), lgc.dlarray(t, "CB")), net_loss,
                   {"x": x, "labels": labels}, _count(net))


def net_loss(net, X, T):  # noqa: N803
    """MATLAB's modelLoss: the loss and the updated batchnorm state."""
    y, state = lgc.forward(net, X)
    return lgc.crossentropy(y, T), state


def cnn_arrays(net) -> dict:
    """The dlnetwork's learnables by 'layer/Parameter', as float32 NumPy arrays."""
    learn = net.Learnables
    return {f"{la}/{pa}": np.asarray(v._data if hasattr(v, "_data") else v, np.float32)
            for la, pa, v in zip(learn.Layer, learn.Parameter, learn.Value)}


# --- LSTM -----------------------------------------------------------------------------------------


def lstm_problem(quick=False, seed=0):
    feat, hidden, steps, batch = (4, 8, 4, 4) if quick else (32, 128, 32, 32)
    rng = _rng(seed)
    s = 1 / np.sqrt(hidden)
    params = {"W": rng.uniform(-s, s, (4 * hidden, feat)).astype(np.float32),
              "R": rng.uniform(-s, s, (4 * hidden, hidden)).astype(np.float32),
              "b": rng.uniform(-s, s, (4 * hidden, 1)).astype(np.float32),
              "fcW": _he(rng, 10, hidden, fan_in=hidden), "fcb": np.zeros((10, 1), np.float32)}
    x = rng.normal(size=(feat, batch, steps)).astype(np.float32)
    labels, t = _targets(rng, 10, batch)
    zeros = np.zeros((hidden, 1), np.float32)

    def lstm_loss(p, X, T):  # noqa: N803
        _, h, _ = lgc.lstm(X, zeros, zeros, p["W"], p["R"], p["b"])
        return lgc.crossentropy(lgc.softmax(lgc.fullyconnect(h, p["fcW"], p["fcb"])), T)

    return Problem(params, (lgc.dlarray(x, "CBT"), lgc.dlarray(t, "CB")), lstm_loss,
                   {"x": x, "labels": labels}, _count(params))


# --- Adam over many parameters: loss sum(θ .* G), so the gradient is G -------------------------


def adam_problem(quick=False, seed=0, n=None):
    n = n or (1000 if quick else 10_000_000)
    rng = _rng(seed)
    theta = rng.normal(size=n).astype(np.float32)
    g = rng.normal(size=n).astype(np.float32)
    return Problem({"theta": theta}, (lgc.dlarray(g, "C"),), adam_loss, {"g": g}, n)


def adam_loss(p, G):  # noqa: N803
    return lgc.sum(p["theta"] * G)


WORKLOADS = {"mlp": mlp_problem, "lenet": lenet_problem, "cnn": cnn_problem,
             "lstm": lstm_problem, "adam": adam_problem}
DESCRIPTION = {"mlp": "MLP 64-256-256-10, batch 128",
               "lenet": "LeNet-5, 28×28×1, batch 64",
               "cnn": "conv-BN-ReLU CNN ×2 + fc, 32×32×3, batch 64",
               "lstm": "LSTM 32→128 hidden, 32 steps, batch 32, last step → fc 10",
               "adam": "Adam over 10M float32 parameters (loss Σθ·G)"}


def problem(name: str, quick: bool) -> Problem:
    if name.startswith("depth"):
        return depth_problem(int(name[5:]), quick)
    return WORKLOADS[name](quick)


# --- PyTorch: the same math, parameters converted once -----------------------------------------


def torch_model(name: str, prob: Problem):
    """(list of leaf tensors to optimize, loss() -> scalar tensor) for workload `name`."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    def leaf(a):
        return torch.tensor(np.ascontiguousarray(a), requires_grad=True)

    def image(a):  # h×w×C×N -> N×C×h×w
        return torch.tensor(np.ascontiguousarray(a.transpose(3, 2, 0, 1)))

    def conv_w(a):
        return leaf(a.transpose(3, 2, 0, 1))

    def flatten(h):  # lgc flattens first S fastest: (N, C, W, H) row-major
        return h.permute(0, 1, 3, 2).reshape(h.shape[0], -1)

    a = prob.arrays
    labels = torch.tensor(a["labels"]) if "labels" in a else None
    if name == "adam":
        theta, g = leaf(prob.params["theta"]), torch.tensor(a["g"])
        return [theta], lambda: (theta * g).sum()
    if name.startswith(("mlp", "depth")):
        p = prob.params
        n = len(p) // 2
        ws = [leaf(p[f"W{i}"]) for i in range(n)]
        bs = [leaf(p[f"b{i}"][:, 0]) for i in range(n)]
        x = torch.tensor(np.ascontiguousarray(a["x"].T))

        def loss():
            h = x
            for i in range(n):
                h = F.linear(h, ws[i], bs[i])
                if i < n - 1:
                    h = torch.relu(h)
            return F.cross_entropy(h, labels)
        return ws + bs, loss
    if name == "lenet":
        p, x = prob.params, image(a["x"])
        c1w, c2w = conv_w(p["c1w"]), conv_w(p["c2w"])
        rest = {k: leaf(v if v.ndim == 1 or k.endswith("w") else v[:, 0])
                for k, v in p.items() if k not in ("c1w", "c2w")}

        def loss():
            h = F.max_pool2d(torch.relu(F.conv2d(x, c1w, rest["c1b"], padding=2)), 2)
            h = F.max_pool2d(torch.relu(F.conv2d(h, c2w, rest["c2b"])), 2)
            h = torch.relu(F.linear(flatten(h), rest["f1w"], rest["f1b"]))
            h = torch.relu(F.linear(h, rest["f2w"], rest["f2b"]))
            return F.cross_entropy(F.linear(h, rest["f3w"], rest["f3b"]), labels)
        return [c1w, c2w, *rest.values()], loss
    if name == "cnn":
        w = cnn_arrays(prob.params)
        x = image(a["x"])
        t = {k: conv_w(v) if v.ndim == 4 else leaf(v.reshape(-1) if "conv" in k or "bn" in k
                                                    else v)
             for k, v in w.items()}
        t["fc/Bias"] = leaf(w["fc/Bias"].reshape(-1))

        def block(h, k):
            h = F.conv2d(h, t[f"conv{k}/Weights"], t[f"conv{k}/Bias"], padding=1)
            h = F.batch_norm(h, None, None, t[f"bn{k}/Scale"], t[f"bn{k}/Offset"], training=True,
                             eps=1e-5)
            return F.max_pool2d(torch.relu(h), 2)

        def loss():
            h = block(block(x, 1), 2)
            return F.cross_entropy(F.linear(flatten(h), t["fc/Weights"], t["fc/Bias"]), labels)
        return list(t.values()), loss
    if name == "lstm":
        p = prob.params
        hidden = p["R"].shape[1]
        cell = torch.nn.LSTM(p["W"].shape[1], hidden)
        with torch.no_grad():
            cell.weight_ih_l0.copy_(torch.tensor(p["W"]))
            cell.weight_hh_l0.copy_(torch.tensor(p["R"]))
            cell.bias_ih_l0.copy_(torch.tensor(p["b"][:, 0]))
            cell.bias_hh_l0.zero_()
        cell.bias_hh_l0.requires_grad_(False)  # lgc has one bias: keep the second at zero
        fcw, fcb = leaf(p["fcW"]), leaf(p["fcb"][:, 0])
        x = torch.tensor(np.ascontiguousarray(a["x"].transpose(2, 1, 0)))  # T×N×C

        def loss():
            out, _ = cell(x)
            return F.cross_entropy(F.linear(out[-1], fcw, fcb), labels)
        return [cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, fcw, fcb], loss
    raise KeyError(name)


# --- JAX: pure functions of a parameter list, jitted with the Adam update ------------------------


def jax_model(name: str, prob: Problem):
    """(list of parameter arrays, loss(params) -> scalar) in jax.numpy for workload `name`."""
    import jax
    import jax.numpy as jnp

    a = prob.arrays
    labels = jnp.asarray(a["labels"]) if "labels" in a else None

    def xent(logits):
        logp = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    def conv(x, w, b, pad):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2,
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def flatten(h):
        return jnp.transpose(h, (0, 1, 3, 2)).reshape(h.shape[0], -1)

    def image(x):
        return jnp.asarray(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))

    if name == "adam":
        g = jnp.asarray(a["g"])
        return [jnp.asarray(prob.params["theta"])], lambda ps: jnp.sum(ps[0] * g)
    if name.startswith(("mlp", "depth")):
        p = prob.params
        n = len(p) // 2
        x = jnp.asarray(a["x"].T)
        params = [jnp.asarray(p[f"W{i}"]) for i in range(n)] + [
            jnp.asarray(p[f"b{i}"][:, 0]) for i in range(n)]

        def loss(ps):
            h = x
            for i in range(n):
                h = h @ ps[i].T + ps[n + i]
                if i < n - 1:
                    h = jax.nn.relu(h)
            return xent(h)
        return params, loss
    if name == "lenet":
        p, x = prob.params, image(a["x"])
        keys = list(p)
        params = [jnp.asarray(p[k].transpose(3, 2, 0, 1) if p[k].ndim == 4 else
                              (p[k][:, 0] if k.endswith("b") and p[k].ndim == 2 else p[k]))
                  for k in keys]

        def loss(ps):
            q = dict(zip(keys, ps))
            h = pool(jax.nn.relu(conv(x, q["c1w"], q["c1b"], 2)))
            h = pool(jax.nn.relu(conv(h, q["c2w"], q["c2b"], 0)))
            h = jax.nn.relu(flatten(h) @ q["f1w"].T + q["f1b"])
            h = jax.nn.relu(h @ q["f2w"].T + q["f2b"])
            return xent(h @ q["f3w"].T + q["f3b"])
        return params, loss
    if name == "cnn":
        w, x = cnn_arrays(prob.params), image(a["x"])
        keys = list(w)
        params = [jnp.asarray(w[k].transpose(3, 2, 0, 1) if w[k].ndim == 4 else
                              (w[k] if k == "fc/Weights" else w[k].reshape(-1))) for k in keys]

        def block(h, q, k):
            h = conv(h, q[f"conv{k}/Weights"], q[f"conv{k}/Bias"], 1)
            mu = h.mean(axis=(0, 2, 3), keepdims=True)
            var = ((h - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True)
            h = (h - mu) / jnp.sqrt(var + 1e-5)
            h = h * q[f"bn{k}/Scale"][None, :, None, None] + q[f"bn{k}/Offset"][None, :, None,
                                                                                None]
            return pool(jax.nn.relu(h))

        def loss(ps):
            q = dict(zip(keys, ps))
            h = block(block(x, q, 1), q, 2)
            return xent(flatten(h) @ q["fc/Weights"].T + q["fc/Bias"])
        return params, loss
    if name == "lstm":
        p = prob.params
        hidden = p["R"].shape[1]
        x = jnp.asarray(a["x"].transpose(2, 1, 0))  # T×N×C
        params = [jnp.asarray(p["W"]), jnp.asarray(p["R"]), jnp.asarray(p["b"][:, 0]),
                  jnp.asarray(p["fcW"]), jnp.asarray(p["fcb"][:, 0])]

        def loss(ps):
            w, r, b, fw, fb = ps
            xp = x @ w.T + b  # the input projection of every step at once

            def cell(carry, xk):
                h, c = carry
                i, f, g, o = jnp.split(xk + h @ r.T, 4, axis=1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), None
            zeros = jnp.zeros((x.shape[1], hidden), x.dtype)
            (h, _), _ = jax.lax.scan(cell, (zeros, zeros), xp)
            return xent(h @ fw.T + fb)
        return params, loss
    raise KeyError(name)
