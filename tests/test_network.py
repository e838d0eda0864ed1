"""Layer graphs and dlnetwork (API.md §5) with tiny test-only layers: graph verbs and their
value semantics, automatic names, Learnables/State tables, forward/predict, Outputs taps, several
inputs and outputs, gradients through dlfeval, provenance of the traced IR."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from lgc.dlnetwork import DLNetwork, dlnetwork, forward, initialize, predict
from lgc.errors import GraphError, ShapeError
from lgc.ir.types import TensorType
from lgc.layers.base import Layer
from lgc.network import (
    LayerGraph,
    addLayers,
    connectLayers,
    disconnectLayers,
    layerGraph,
    removeLayers,
    replaceLayer,
)

# --- test-only layers (the contract of lgc.layers.base) -----------------------------------------


class VecInput(Layer):
    stem = "input"
    Type = "Test Input"

    def __init__(self, n, Name=""):  # noqa: N803
        super().__init__(Name)
        self.InputSize = n

    @property
    def InputNames(self):  # noqa: N802
        return []

    def input_type(self):
        return TensorType("f64", (self.InputSize, 1), "CB")

    def forward(self, inputs, learnables, state, training):
        (x,) = inputs
        if x.shape[0] != self.InputSize:
            raise ShapeError(f"{self.Name}: input has {x.shape[0]} channels, want "
                             f"{self.InputSize}")
        return [x], {}


class Dense(Layer):
    stem = "fc"
    Type = "Test Dense"
    learnable_names = ("Weights", "Bias")

    def __init__(self, n, Name=""):  # noqa: N803
        super().__init__(Name)
        self.OutputSize = n

    def initialize(self, in_types, rng):
        c = in_types[0].shape[0]
        return {"Weights": rng.normal(size=(self.OutputSize, c)),
                "Bias": rng.normal(size=(self.OutputSize, 1))}, {}

    def forward(self, inputs, learnables, state, training):
        return [lgc.fullyconnect(inputs[0], learnables["Weights"], learnables["Bias"])], {}


class Relu(Layer):
    stem = "relu"
    Type = "Test ReLU"

    def forward(self, inputs, learnables, state, training):
        return [lgc.relu(inputs[0])], {}


class Add(Layer):
    stem = "add"
    Type = "Test Addition"

    def __init__(self, n=2, Name=""):  # noqa: N803
        super().__init__(Name)
        self.NumInputs_ = n

    @property
    def InputNames(self):  # noqa: N802
        return [f"in{k + 1}" for k in range(self.NumInputs_)]

    def forward(self, inputs, learnables, state, training):
        shapes = {x.shape for x in inputs}
        if len(shapes) > 1:
            raise ShapeError(f"{self.Name}: inputs must have the same size, got "
                             f"{[x.shape for x in inputs]}")
        y = inputs[0]
        for x in inputs[1:]:
            y = y + x
        return [y], {}


class RunNorm(Layer):
    """Subtracts the batch mean in training (updating a running mean), the running mean in
    prediction."""

    stem = "norm"
    Type = "Test Norm"
    state_names = ("Mean",)

    def initialize(self, in_types, rng):
        return {}, {"Mean": np.zeros((in_types[0].shape[0], 1))}

    def forward(self, inputs, learnables, state, training):
        x = inputs[0]
        if not training:
            return [x - state["Mean"]], {}
        m = lgc.mean(x, 1)
        return [x - m], {"Mean": state["Mean"] * 0.9 + lgc.stripdims(m) * 0.1}


class Split(Layer):
    stem = "split"
    Type = "Test Split"

    @property
    def OutputNames(self):  # noqa: N802
        return ["out", "neg"]

    def forward(self, inputs, learnables, state, training):
        return {"out": inputs[0], "neg": -inputs[0]}, {}


def chain():
    return [VecInput(3), Dense(4), Relu(), Dense(2)]


def x_cb(n=5, c=3, seed=0):
    return lgc.dlarray(np.random.default_rng(seed).normal(size=(c, n)), "CB")


# --- LayerGraph --------------------------------------------------------------------------------


def test_layer_graph_chains_and_names_automatically():
    layers = chain()
    lg = layerGraph(layers)
    assert [la.Name for la in lg.Layers] == ["input_1", "fc_1", "relu_1", "fc_2"]
    assert [la.Name for la in layers] == ["", "", "", ""]  # the user's objects are untouched
    assert lg.Connections.Source == ["input_1", "fc_1", "relu_1"]
    assert lg.Connections.Destination == ["fc_1", "relu_1", "fc_2"]
    assert sorted(lg.graph.nodes) == sorted(["input_1", "fc_1", "relu_1", "fc_2"])
    assert isinstance(lg.graph.nodes["fc_1"]["layer"], Dense)
    (edge,) = lg.graph.get_edge_data("fc_1", "relu_1").values()
    assert (edge["src_port"], edge["dst_port"]) == ("out", "in")


def test_auto_names_skip_taken_names_and_continue_across_adds():
    lg = layerGraph([Relu(Name="relu_1"), Relu(), Relu()])
    assert [la.Name for la in lg.Layers] == ["relu_1", "relu_2", "relu_3"]
    lg2 = lg.addLayers(Relu())
    assert [la.Name for la in lg2.Layers][-1] == "relu_4"


def test_verbs_return_new_graphs():
    lg = layerGraph(chain())
    lg2 = lg.addLayers([Relu(Name="extra")])
    assert "extra" not in lg.graph and "extra" in lg2.graph
    lg3 = lg2.connectLayers("fc_2", "extra")
    assert len(lg2.Connections) == 3 and len(lg3.Connections) == 4
    lg4 = lg3.disconnectLayers("fc_2", "extra")
    assert len(lg3.Connections) == 4 and len(lg4.Connections) == 3
    lg5 = lg3.removeLayers("extra")
    assert "extra" in lg3.graph and "extra" not in lg5.graph
    # mutating a returned layer does not reach the graph
    lg.Layers[1].OutputSize = 99
    assert lg.graph.nodes["fc_1"]["layer"].OutputSize == 4


def test_module_functions_match_methods():
    lg = layerGraph(chain())
    a = connectLayers(addLayers(lg, Relu(Name="r")), "fc_2", "r")
    b = lg.addLayers(Relu(Name="r")).connectLayers("fc_2", "r")
    assert a.Connections.Source == b.Connections.Source
    assert disconnectLayers(a, "fc_2", "r").Connections.Destination == \
        b.disconnectLayers("fc_2", "r").Connections.Destination
    assert [la.Name for la in removeLayers(a, ["r"]).Layers] == ["input_1", "fc_1", "relu_1",
                                                                  "fc_2"]
    r = replaceLayer(a, "relu_1", Relu(Name="new"))
    assert "new" in r.graph and "relu_1" not in r.graph


def test_ports_in_connections_follow_matlab():
    lg = layerGraph([VecInput(3, Name="in"), Split(Name="sp"), Add(Name="add")])
    lg = lg.connectLayers("sp/neg", "add/in2")
    # as in MATLAB, a layer with several outputs is always named with the port
    assert lg.Connections.Source == ["in", "sp/out", "sp/neg"]
    assert lg.Connections.Destination == ["sp", "add/in1", "add/in2"]


@pytest.mark.parametrize("s, d, words", [
    ("nope", "add/in2", ["nope"]),
    ("sp", "nope/in", ["nope"]),
    ("sp/bad", "add/in2", ["bad", "out, neg"]),
    ("sp", "add/in9", ["in9", "in1, in2"]),
    ("sp", "add/in1", ["already connected"]),
    ("sp", "add", ["in1, in2"]),
])
def test_connect_errors_name_the_layer_or_port(s, d, words):
    lg = layerGraph([VecInput(3, Name="in"), Split(Name="sp"), Add(Name="add")])
    with pytest.raises(GraphError) as e:
        lg.connectLayers(s, d)
    for w in words:
        assert w in str(e.value)


def test_duplicate_name_raises_on_add():
    with pytest.raises(GraphError, match="'x'"):
        layerGraph([Relu(Name="x"), Relu(Name="x")])
    lg = layerGraph(Relu(Name="x"))
    with pytest.raises(GraphError, match="'x'"):
        lg.addLayers(Relu(Name="x"))


def test_unknown_names_in_disconnect_remove_replace():
    lg = layerGraph(chain())
    with pytest.raises(GraphError, match="not connected"):
        lg.disconnectLayers("input_1", "fc_2")
    with pytest.raises(GraphError, match="'ghost'"):
        lg.removeLayers(["fc_1", "ghost"])
    with pytest.raises(GraphError, match="'ghost'"):
        lg.replaceLayer("ghost", Relu())


def test_cycle_is_accepted_by_connect():
    lg = layerGraph([VecInput(3), Add(Name="a"), Relu(Name="r")]).connectLayers("r", "a/in2")
    assert ("r", "a") in lg.graph.edges()


def test_replace_layer_reconnects_by_name_and_order():
    lg = layerGraph([VecInput(3, Name="in"), Split(Name="sp"), Add(Name="add")])
    lg = lg.connectLayers("sp/neg", "add/in2")
    r = lg.replaceLayer("add", [Add(Name="add2"), Relu(Name="r")])
    assert r.Connections.Source == ["in", "sp/out", "sp/neg", "add2"]
    assert r.Connections.Destination == ["sp", "add2/in1", "add2/in2", "r"]
    r2 = lg.replaceLayer("sp", [Relu(Name="r1"), Split(Name="sp2")])
    assert r2.Connections.Source == ["in", "sp2/out", "sp2/neg", "r1"]
    with pytest.raises(GraphError, match="neg"):
        lg.replaceLayer("sp", Relu(Name="only_out"))


# --- dlnetwork ---------------------------------------------------------------------------------


def numpy_chain(net, x):
    w1, b1, w2, b2 = (np.asarray(v) for v in net.Learnables.Value)
    return w2 @ np.maximum(w1 @ x + b1, 0) + b2


def test_dlnetwork_tables_and_names():
    lgc.rng(0)
    net = dlnetwork(chain())
    assert isinstance(net, DLNetwork) and net.Initialized
    assert net.Learnables.Layer == ["fc_1", "fc_1", "fc_2", "fc_2"]
    assert net.Learnables.Parameter == ["Weights", "Bias", "Weights", "Bias"]
    assert net.Learnables["fc_1", "Weights"].shape == (4, 3)
    assert all(isinstance(v, lgc.DLArray) for v in net.Learnables.Value)
    assert len(net.State) == 0
    assert net.InputNames == ["input_1"] and net.OutputNames == ["fc_2"]
    assert [la.Name for la in net.Layers] == ["input_1", "fc_1", "relu_1", "fc_2"]
    assert "fc_1" in repr(net.Learnables)


def test_initialization_is_seeded():
    lgc.rng(7)
    a = dlnetwork(chain())
    lgc.rng(7)
    b = dlnetwork(chain())
    for u, v in zip(a.Learnables.Value, b.Learnables.Value):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_predict_matches_numpy_and_forward_returns_state():
    net = dlnetwork(chain())
    x = x_cb()
    y = predict(net, x)
    assert y.fmt == "CB" and y.shape == (2, 5)
    np.testing.assert_allclose(np.asarray(y), numpy_chain(net, np.asarray(x)), rtol=1e-12)
    y2, state = forward(net, x)
    np.testing.assert_allclose(np.asarray(y2), np.asarray(y), rtol=1e-12)
    assert isinstance(state, lgc.Table) and len(state) == 0
    # numpy input is formatted like the input layer
    np.testing.assert_allclose(np.asarray(predict(net, np.asarray(x))), np.asarray(y))


def test_state_is_returned_never_written_back():
    lgc.rng(1)
    net = dlnetwork([VecInput(3), RunNorm(), Dense(2)])
    assert net.State.Layer == ["norm_1"] and net.State.Parameter == ["Mean"]
    x = x_cb(n=6)
    y, state = forward(net, x)
    np.testing.assert_array_equal(np.asarray(net.State["norm_1", "Mean"]), np.zeros((3, 1)))
    want = 0.1 * np.asarray(x).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(state["norm_1", "Mean"]), want, rtol=1e-12)
    # predict uses the stored state: zeros before, the new mean after writing it back
    centered = numpy_after_norm = np.asarray(predict(net, x, Outputs="norm_1"))
    np.testing.assert_allclose(centered, np.asarray(x))
    net.State = state
    numpy_after_norm = np.asarray(predict(net, x, Outputs="norm_1"))
    np.testing.assert_allclose(numpy_after_norm, np.asarray(x) - want, rtol=1e-12)


def multi_io_graph():
    lg = layerGraph([VecInput(3, Name="a"), Split(Name="sp"), Add(Name="add"),
                     Dense(2, Name="fa")])
    lg = lg.addLayers([VecInput(3, Name="b"), Relu(Name="rb")]).connectLayers("rb", "add/in2")
    return lg.addLayers(Relu(Name="rn")).connectLayers("sp/neg", "rn")


def test_several_inputs_and_outputs():
    net = dlnetwork(multi_io_graph())
    assert net.InputNames == ["a", "b"]
    assert net.OutputNames == ["fa", "rn"]
    xa, xb = x_cb(seed=1), x_cb(seed=2)
    ya, yn, state = forward(net, xa, xb)
    a, b = np.asarray(xa), np.asarray(xb)
    w, bias = (np.asarray(v) for v in net.Learnables.Value)
    np.testing.assert_allclose(np.asarray(ya), w @ (a + np.maximum(b, 0)) + bias, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(yn), np.maximum(-a, 0))
    p = predict(net, xa, xb)
    assert isinstance(p, tuple) and len(p) == 2
    with pytest.raises(GraphError, match="2 input"):
        predict(net, xa)


def test_outputs_taps_any_layer_and_port():
    net = dlnetwork(multi_io_graph())
    xa, xb = x_cb(seed=1), x_cb(seed=2)
    r, neg = predict(net, xa, xb, Outputs=["rb", "sp/neg"])
    np.testing.assert_allclose(np.asarray(r), np.maximum(np.asarray(xb), 0))
    np.testing.assert_allclose(np.asarray(neg), -np.asarray(xa))
    with pytest.raises(GraphError, match="ghost"):
        predict(net, xa, xb, Outputs="ghost")
    with pytest.raises(GraphError, match="out, neg"):
        predict(net, xa, xb, Outputs="sp/nope")


def test_invalid_graph_raises_graph_error_with_issues():
    lg = layerGraph([VecInput(3), Add(Name="a"), Relu(Name="r")]).connectLayers("r", "a/in2")
    with pytest.raises(GraphError) as e:
        dlnetwork(lg)
    assert e.value.issues and "cycle" in str(e.value) and "'a'" not in str(e.value).split()[0]
    assert any(i.Layer in ("a", "r") for i in e.value.issues)


def test_size_mismatch_chains_the_layer_error():
    lg = layerGraph([VecInput(3, Name="in"), Dense(4, Name="fc"), Add(Name="add")])
    lg = lg.connectLayers("in", "add/in2")
    with pytest.raises(GraphError, match="add") as e:
        dlnetwork(lg)
    assert isinstance(e.value.__cause__, ShapeError)


def test_uninitialized_network_and_initialize():
    lg = layerGraph([Dense(4, Name="fc"), Relu()])
    net = dlnetwork(lg, Initialize=False)
    assert not net.Initialized and len(net.Learnables) == 0
    assert net.InputNames == ["fc"]
    with pytest.raises(GraphError, match="initialize"):
        predict(net, x_cb())
    with pytest.raises(GraphError, match="no input layer"):
        dlnetwork(lg)
    net2 = initialize(net, x_cb())
    assert net2.Initialized and net2.Learnables["fc", "Weights"].shape == (4, 3)
    assert predict(net2, x_cb()).shape == (4, 5)
    net3 = dlnetwork(lg, x_cb())
    assert net3.Initialized


def test_network_without_input_layer_takes_example_inputs():
    net = dlnetwork(layerGraph([Add(Name="add"), Relu()]), x_cb(), x_cb())
    assert net.InputNames == ["add/in1", "add/in2"]
    y = predict(net, x_cb(seed=3), x_cb(seed=4))
    np.testing.assert_allclose(np.asarray(y), np.maximum(np.asarray(x_cb(seed=3)) +
                                                         np.asarray(x_cb(seed=4)), 0))


def loss_net(net, x, t):
    y, state = forward(net, x)
    loss = lgc.mse(y, t)
    return loss, lgc.dlgradient(loss, net.Learnables), state


def loss_model(params, x, t):
    y = lgc.fullyconnect(x, params["w1"], params["b1"])
    y = lgc.relu(y)
    y = lgc.fullyconnect(y, params["w2"], params["b2"])
    loss = lgc.mse(y, t)
    return loss, lgc.dlgradient(loss, params)


def test_gradients_match_the_model_function():
    lgc.rng(3)
    net = dlnetwork(chain())
    x, t = x_cb(), lgc.dlarray(np.random.default_rng(9).normal(size=(2, 5)), "CB")
    loss, grads, state = lgc.dlfeval(loss_net, net, x, t)
    assert isinstance(grads, lgc.Table)
    assert grads.Layer == net.Learnables.Layer and grads.Parameter == net.Learnables.Parameter
    params = dict(zip(["w1", "b1", "w2", "b2"], net.Learnables.Value))
    loss2, g2 = lgc.dlfeval(loss_model, params, x, t)
    np.testing.assert_allclose(float(loss), float(loss2), rtol=1e-12)
    for g, k in zip(grads.Value, ["w1", "b1", "w2", "b2"]):
        assert g.shape == params[k].shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(g2[k]), rtol=1e-10)


def test_layer_nodes_carry_the_layer_name():
    net = dlnetwork([VecInput(3), Dense(4, Name="fc1"), Relu(Name="r"), Dense(2, Name="fc2")])
    prog = lgc.trace(lambda n, x: predict(n, x), net, x_cb())
    provs = {n.prov for n in prog.graph.nodes}
    assert provs <= {"fc1", "r", "fc2", "input_1"}
    assert {"fc1", "r", "fc2"} <= provs
    assert "# fc1" in str(prog)


def test_eager_calls_are_compiled_once_per_signature():
    from lgc import transforms
    from lgc.dlnetwork import _eager

    net = dlnetwork(chain())
    predict(net, x_cb())
    n = len(transforms._cache_for(_eager))
    predict(net, x_cb(seed=5))
    assert len(transforms._cache_for(_eager)) == n
    predict(net, x_cb(n=7))
    assert len(transforms._cache_for(_eager)) == n + 1


def test_network_passes_through_dlfeval_as_a_pytree():
    net = dlnetwork(chain())
    out = lgc.dlfeval(lambda n: n, net)
    assert isinstance(out, DLNetwork) and out._arch is net._arch
    for u, v in zip(out.Learnables.Value, net.Learnables.Value):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_layer_graph_of_a_graph_is_a_copy():
    lg = layerGraph(chain())
    lg2 = layerGraph(lg)
    assert isinstance(lg2, LayerGraph) and lg2.graph is not lg.graph
    assert lg2.Connections.Source == lg.Connections.Source


# --- real layers: networks equal the same model written with the MATLAB functions ------------

from lgc.layers import (  # noqa: E402
    additionLayer,
    batchNormalizationLayer,
    convolution2dLayer,
    fullyConnectedLayer,
    globalAveragePooling2dLayer,
    imageInputLayer,
    maxPooling2dLayer,
    maxUnpooling2dLayer,
    reluLayer,
    softmaxLayer,
)


def cbr_net():
    lgc.rng(11)
    return dlnetwork([imageInputLayer([6, 6, 2], Normalization="none", Name="in"),
                      convolution2dLayer(3, 4, Padding="same", Name="conv"),
                      batchNormalizationLayer(Name="bn"), reluLayer(Name="relu"),
                      maxPooling2dLayer(2, Stride=2, Name="pool"),
                      fullyConnectedLayer(3, Name="fc"), softmaxLayer(Name="sm")])


def cbr_model(p, s, x, training):
    y = lgc.dlconv(x, p["conv/Weights"], p["conv/Bias"], Padding="same")
    if training:
        y, m, v = lgc.batchnorm(y, p["bn/Offset"], p["bn/Scale"], s["bn/TrainedMean"],
                                s["bn/TrainedVariance"])
        s = {"bn/TrainedMean": m, "bn/TrainedVariance": v}
    else:
        y = lgc.batchnorm(y, p["bn/Offset"], p["bn/Scale"], s["bn/TrainedMean"],
                          s["bn/TrainedVariance"], Training=False)
    y = lgc.maxpool(lgc.relu(y), 2, Stride=2)
    return lgc.softmax(lgc.fullyconnect(y, p["fc/Weights"], p["fc/Bias"])), s


def residual_net():
    lgc.rng(12)
    lg = layerGraph([imageInputLayer([5, 5, 3], Normalization="none", Name="in"),
                     convolution2dLayer(3, 4, Padding="same", Name="c1"),
                     batchNormalizationLayer(Name="bn1"), reluLayer(Name="r1"),
                     convolution2dLayer(3, 4, Padding="same", Name="c2"),
                     batchNormalizationLayer(Name="bn2"), additionLayer(2, Name="add"),
                     reluLayer(Name="r2"), globalAveragePooling2dLayer(Name="gap"),
                     fullyConnectedLayer(3, Name="fc"), softmaxLayer(Name="sm")])
    return dlnetwork(lg.connectLayers("r1", "add/in2"))


def residual_model(p, s, x, training):
    new = {}

    def bn(y, k):
        if not training:
            return lgc.batchnorm(y, p[f"{k}/Offset"], p[f"{k}/Scale"], s[f"{k}/TrainedMean"],
                                 s[f"{k}/TrainedVariance"], Training=False)
        y, new[f"{k}/TrainedMean"], new[f"{k}/TrainedVariance"] = lgc.batchnorm(
            y, p[f"{k}/Offset"], p[f"{k}/Scale"], s[f"{k}/TrainedMean"],
            s[f"{k}/TrainedVariance"])
        return y

    r1 = lgc.relu(bn(lgc.dlconv(x, p["c1/Weights"], p["c1/Bias"], Padding="same"), "bn1"))
    y = bn(lgc.dlconv(r1, p["c2/Weights"], p["c2/Bias"], Padding="same"), "bn2")
    y = lgc.avgpool(lgc.relu(y + r1), "global")
    return lgc.softmax(lgc.fullyconnect(y, p["fc/Weights"], p["fc/Bias"])), new or s


def as_dict(table):
    return {f"{la}/{pa}": v for la, pa, v in table}


def net_loss(net, x, t):
    y, state = forward(net, x)
    loss = lgc.crossentropy(y, t)
    return loss, lgc.dlgradient(loss, net.Learnables), state, y


def model_loss(model, p, s, x, t):
    y, state = model(p, s, x, True)
    loss = lgc.crossentropy(y, t)
    return loss, lgc.dlgradient(loss, p), state, y


def batch(h, c, n=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = lgc.dlarray(rng.normal(size=(h, h, c, n)).astype(np.float32), "SSCB")
    t = lgc.dlarray(np.eye(k, dtype=np.float32)[:, rng.integers(0, k, n)], "CB")
    return x, t


@pytest.mark.parametrize("make, model, h, c", [(cbr_net, cbr_model, 6, 2),
                                               (residual_net, residual_model, 5, 3)],
                         ids=["conv_bn_relu_pool_fc_softmax", "residual"])
def test_network_equals_model_function(make, model, h, c):
    net = make()
    x, t = batch(h, c)
    loss, grads, state, y = lgc.dlfeval(net_loss, net, x, t)
    p, s = as_dict(net.Learnables), as_dict(net.State)
    loss2, grads2, state2, y2 = lgc.dlfeval(lambda p, s, x, t: model_loss(model, p, s, x, t),
                                            p, s, x, t)
    tol = {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(np.asarray(y), np.asarray(y2), **tol)
    np.testing.assert_allclose(float(loss), float(loss2), **tol)
    for (la, pa, g) in grads:
        np.testing.assert_allclose(np.asarray(g), np.asarray(grads2[f"{la}/{pa}"]), **tol,
                                   err_msg=f"{la}/{pa}")
    for (la, pa, v) in state:
        np.testing.assert_allclose(np.asarray(v), np.asarray(state2[f"{la}/{pa}"]), **tol)
    # predict (trained statistics) equals the model function in inference mode
    net.State = state
    yp, _ = model(p, as_dict(state), x, False)
    np.testing.assert_allclose(np.asarray(predict(net, x)), np.asarray(yp), **tol)


def test_net_layers_show_the_current_learnables():
    net = cbr_net()
    conv = net.Layers[1]
    assert conv.Name == "conv"
    np.testing.assert_array_equal(conv.Weights, np.asarray(net.Learnables["conv", "Weights"]))
    conv.Weights[...] = 0  # a copy: the network is unchanged
    assert np.any(np.asarray(net.Learnables["conv", "Weights"]) != 0)


def test_real_network_provenance_names_every_layer():
    net = residual_net()
    x, t = batch(5, 3)
    prog = lgc.trace(net_loss, net, x, t)
    names = {la.Name for la in net.Layers}
    fwd = [n for n in prog.graph.nodes if not n.prov.startswith(("vjp(", "dlgradient"))]
    layer_nodes = [n for n in fwd if n.prov in names]
    assert {n.prov for n in layer_nodes} >= names - {"in"}
    assert all(n.prov in names | {"crossentropy", ""} for n in fwd), \
        {n.prov for n in fwd} - names


def test_unpooling_ports_and_indices_tap():
    lgc.rng(2)
    lg = layerGraph([imageInputLayer([4, 4, 1], Normalization="none", Name="in"),
                     maxPooling2dLayer(2, Stride=2, HasUnpoolingOutputs=True, Name="mp"),
                     maxUnpooling2dLayer(Name="up")])
    lg = lg.connectLayers("mp/indices", "up/indices").connectLayers("mp/size", "up/size")
    assert lg.Connections.Source == ["in", "mp/out", "mp/indices", "mp/size"]
    net = dlnetwork(lg)
    assert net.OutputNames == ["up"]
    x = lgc.dlarray(np.arange(16, dtype=np.float32).reshape(4, 4, 1, 1), "SSCB")
    y, idx = predict(net, x, Outputs=["up", "mp/indices"])
    _, idx2, _ = lgc.maxpool(x, 2, Stride=2, ReturnIndices=True)
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(idx2))
    assert float(lgc.sum(y)) == float(lgc.sum(lgc.maxpool(x, 2, Stride=2)))


def torch_check(net, x, t, torch_model):
    """Loss, outputs and gradients of `net` against a PyTorch float64 model with copied
    weights (lgc's SSCB input is passed to PyTorch as NCHW)."""
    torch = pytest.importorskip("torch")
    loss, grads, _, y = lgc.dlfeval(net_loss, net, x, t)
    p = {k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True)
         for k, v in as_dict(net.Learnables).items()}
    xt = torch.tensor(np.asarray(x).transpose(3, 2, 0, 1), dtype=torch.float64)
    z = torch.softmax(torch_model(torch, p, xt), dim=1)
    tt = torch.tensor(np.asarray(t).T, dtype=torch.float64)
    lt = -(tt * torch.log(z)).sum() / z.shape[0]
    lt.backward()
    np.testing.assert_allclose(np.asarray(y).T, z.detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(loss), lt.item(), rtol=1e-5)
    for la, pa, g in grads:
        np.testing.assert_allclose(np.asarray(g), p[f"{la}/{pa}"].grad.numpy(), rtol=1e-3,
                                   atol=1e-5, err_msg=f"{la}/{pa}")


def torch_conv_bn(torch, p, z, conv, bn):
    f = torch.nn.functional
    z = f.conv2d(z, p[f"{conv}/Weights"].permute(3, 2, 0, 1), p[f"{conv}/Bias"].reshape(-1),
                 padding=1)
    c = z.shape[1]
    return f.batch_norm(z, torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64),
                        p[f"{bn}/Scale"].reshape(-1), p[f"{bn}/Offset"].reshape(-1),
                        training=True, eps=1e-5)


def test_cbr_network_matches_pytorch():
    def model(torch, p, x):
        z = torch.nn.functional.max_pool2d(torch.relu(torch_conv_bn(torch, p, x, "conv", "bn")),
                                           2, 2)
        # MATLAB flattens an observation with the first S fastest and C slowest: (N, C, W, H)
        z = z.permute(0, 1, 3, 2).reshape(z.shape[0], -1)
        return z @ p["fc/Weights"].T + p["fc/Bias"].reshape(-1)

    torch_check(cbr_net(), *batch(6, 2), model)


def test_residual_network_matches_pytorch():
    def model(torch, p, x):
        r1 = torch.relu(torch_conv_bn(torch, p, x, "c1", "bn1"))
        z = torch.relu(torch_conv_bn(torch, p, r1, "c2", "bn2") + r1).mean(dim=(2, 3))
        return z @ p["fc/Weights"].T + p["fc/Bias"].reshape(-1)

    torch_check(residual_net(), *batch(5, 3), model)
