"""Layers: parameter shapes per API.md §5 from the input type, forward equal to the MATLAB
function called directly with the same parameters, training versus predict, state, factors,
errors that start with the layer's name and type, and tracing inside dlfeval."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from lgc import (
    FormatError,
    ShapeError,
    avgpool,
    batchnorm,
    crosschannelnorm,
    dlarray,
    dlconv,
    dlfeval,
    dlgradient,
    dltranspconv,
    embed,
    extractdata,
    fullyconnect,
    groupnorm,
    gru,
    layernorm,
    leakyrelu,
    lstm,
    maxpool,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from lgc import layers as ly
from lgc.ir.types import TensorType


def rng(seed=0):
    return np.random.default_rng(seed)


def image(h=5, w=4, c=3, n=2, seed=0):
    return dlarray(rng(seed).normal(size=(h, w, c, n)).astype(np.float32), "SSCB")


def seq(c=3, n=2, t=4, seed=0):
    return dlarray(rng(seed).normal(size=(c, n, t)).astype(np.float32), "CBT")


def type_of(x) -> TensorType:
    return TensorType("f32" if x.dtype == np.float32 else "f64", x.shape, x.fmt)


def run(layer, *xs, training=True, seed=0):
    """initialize from the inputs' types, then forward; returns (outputs, params, state, new)."""
    params, state = layer.initialize([type_of(x) for x in xs], rng(seed))
    outs, new_state = layer.forward(list(xs), params, state, training)
    return outs, params, state, new_state


def close(a, b, **kw):
    np.testing.assert_allclose(extractdata(a), extractdata(b), rtol=1e-5, atol=1e-6, **kw)


# --- every factory ----------------------------------------------------------------------------

MINIMAL = {
    "imageInputLayer": ([28, 28, 1],), "featureInputLayer": (4,), "sequenceInputLayer": (3,),
    "convolution2dLayer": (3, 8), "transposedConv2dLayer": (2, 4), "fullyConnectedLayer": (10,),
    "groupNormalizationLayer": (2,), "crossChannelNormalizationLayer": (3,),
    "maxPooling2dLayer": (2,), "averagePooling2dLayer": (2,), "additionLayer": (2,),
    "concatenationLayer": (2, 2), "depthConcatenationLayer": (2,), "lstmLayer": (5,),
    "gruLayer": (5,), "embeddingLayer": (4, 10), "functionLayer": (lambda x: x,),
}


@pytest.mark.parametrize("name", ly.FACTORIES)
def test_factory_builds_a_named_layer_with_stem_and_type(name):
    layer = getattr(ly, name)(*MINIMAL.get(name, ()), Name="my_layer")
    assert isinstance(layer, ly.Layer)
    assert layer.Name == "my_layer"
    assert "stem" in vars(type(layer)) and layer.Type != ly.Layer.Type
    assert "my_layer" in repr(layer)
    unnamed = getattr(ly, name)(*MINIMAL.get(name, ()))
    assert unnamed.Name == ""


def test_automatic_name_stems_are_matlabs():
    assert ly.convolution2dLayer(3, 4).stem == "conv"
    assert ly.fullyConnectedLayer(3).stem == "fc"
    assert ly.reluLayer().stem == "relu"
    assert ly.batchNormalizationLayer().stem == "batchnorm"
    assert ly.imageInputLayer([4, 4]).stem == "imageinput"


def test_ports():
    assert ly.reluLayer().InputNames == ["in"] and ly.reluLayer().OutputNames == ["out"]
    assert ly.imageInputLayer([4, 4, 1]).InputNames == []
    assert ly.additionLayer(3).InputNames == ["in1", "in2", "in3"]
    assert ly.additionLayer(3).NumInputs == 3
    assert ly.maxPooling2dLayer(2).OutputNames == ["out"]
    assert ly.maxPooling2dLayer(2, HasUnpoolingOutputs=True).OutputNames == \
        ["out", "indices", "size"]
    assert ly.maxUnpooling2dLayer().InputNames == ["in", "indices", "size"]
    f = ly.functionLayer(lambda a, b: (a, b), NumInputs=2, NumOutputs=2)
    assert f.InputNames == ["in1", "in2"] and f.OutputNames == ["out1", "out2"]


# --- input layers -----------------------------------------------------------------------------


def test_input_types_for_a_batch_of_one():
    assert ly.imageInputLayer([5, 4, 3]).input_type() == TensorType("f32", (5, 4, 3, 1), "SSCB")
    assert ly.imageInputLayer([5, 4]).input_type() == TensorType("f32", (5, 4, 1, 1), "SSCB")
    assert ly.featureInputLayer(6).input_type() == TensorType("f32", (6, 1), "CB")
    assert ly.sequenceInputLayer(6).input_type() == TensorType("f32", (6, 1, 1), "CBT")
    assert ly.sequenceInputLayer([4, 4, 2]).input_type() == \
        TensorType("f32", (4, 4, 2, 1, 1), "SSCBT")
    assert ly.reluLayer().input_type() is None


def test_image_input_normalizations():
    x = image(3, 2, 2, 2)
    xd = extractdata(x)
    mean = np.array([1.0, -2.0], np.float32)
    (y,), *_ = run(ly.imageInputLayer([3, 2, 2], Mean=mean), x)
    close(y, xd - mean.reshape(1, 1, 2, 1))
    assert y.fmt == "SSCB"
    full = rng(1).normal(size=(3, 2, 2)).astype(np.float32)
    std = np.array([2.0, 4.0], np.float32)
    (y,), *_ = run(ly.imageInputLayer([3, 2, 2], Normalization="zscore", Mean=full,
                                     StandardDeviation=std), x)
    close(y, (xd - full[..., None]) / std.reshape(1, 1, 2, 1))
    (y,), *_ = run(ly.imageInputLayer([3, 2, 2], Normalization="rescale-symmetric", Min=-3.0,
                                     Max=5.0), x)
    close(y, 2 * (xd + 3) / 8 - 1)
    (y,), *_ = run(ly.imageInputLayer([3, 2, 2], Normalization="rescale-zero-one", Min=-3.0,
                                     Max=5.0), x)
    close(y, (xd + 3) / 8)
    (y,), *_ = run(ly.imageInputLayer([3, 2, 2], Normalization="none"), x)
    close(y, xd)
    (y,), *_ = run(ly.imageInputLayer([3, 2, 2], Normalization=lambda v: v * 2.0), x)
    close(y, 2 * xd)


def test_zerocenter_without_mean_is_the_identity_and_mean_is_settable():
    layer = ly.imageInputLayer([3, 2, 2])
    assert layer.Normalization == "zerocenter" and layer.Mean is None
    x = image(3, 2, 2, 1)
    (y,), *_ = run(layer, x)
    close(y, x)
    layer.Mean = np.full((1, 1, 2), 0.5)
    (y,), *_ = run(layer, x)
    close(y, extractdata(x) - 0.5)


def test_feature_and_sequence_input_normalize_and_accept_unformatted_data():
    x = rng().normal(size=(4, 3)).astype(np.float32)
    layer = ly.featureInputLayer(4, Normalization="zscore", Mean=np.arange(4.0),
                                StandardDeviation=np.full(4, 2.0))
    assert ly.featureInputLayer(4).Normalization == "none"
    (y,), *_ = run(layer, dlarray(x, "CB"))
    close(y, (x - np.arange(4.0)[:, None]) / 2)
    (y2,), _ = layer.forward([x], {}, {}, False)  # unformatted: the layer's "CB" layout
    assert y2.fmt == "CB"
    close(y2, y)
    s = rng().normal(size=(3, 2, 5)).astype(np.float32)
    (y,), *_ = run(ly.sequenceInputLayer(3, Normalization="zerocenter", Mean=[1, 2, 3]),
                   dlarray(s, "CBT"))
    assert y.fmt == "CBT"
    close(y, s - np.array([1, 2, 3]).reshape(3, 1, 1))


def test_input_layer_errors_name_the_layer():
    layer = ly.imageInputLayer([5, 4, 3], Name="in")
    with pytest.raises(ShapeError, match=r"^in \(Image Input\): input SSCB \(5, 4, 2, 2\) does "
                                         r"not match InputSize \(5, 4, 3\)"):
        layer.forward([image(5, 4, 2)], {}, {}, True)
    with pytest.raises(FormatError, match=r"^in \(Image Input\): input must be formatted SSCB, "
                                          r"got CB"):
        layer.forward([dlarray(np.zeros((3, 2), np.float32), "CB")], {}, {}, True)
    with pytest.raises(ShapeError, match="imageInputLayer: Mean must have one value per"):
        ly.imageInputLayer([5, 4, 3], Mean=np.zeros(4))
    with pytest.raises(ShapeError, match="imageInputLayer: Normalization must be one of"):
        ly.imageInputLayer([5, 4, 3], Normalization="center")
    with pytest.raises(ShapeError, match=r"^seq \(Sequence Input\): sequences have 2 time "
                                         r"steps, fewer than MinLength 3"):
        ly.sequenceInputLayer(3, MinLength=3, Name="seq").forward([seq(t=2)], {}, {}, True)


# --- convolution ------------------------------------------------------------------------------


def test_convolution_shapes_and_forward_equal_dlconv():
    x = image(6, 5, 3)
    layer = ly.convolution2dLayer([3, 2], 4, Stride=2, Padding=[1, 0, 2, 1], DilationFactor=[1, 2])
    assert layer.PaddingMode == "manual" and layer.PaddingSize == (1, 0, 2, 1)
    (y,), p, _, new = run(layer, x)
    assert p["Weights"].shape == (3, 2, 3, 4) and p["Bias"].shape == (1, 1, 4)
    assert all(v.dtype == np.float32 for v in p.values())
    assert new == {}
    p = {"Weights": p["Weights"], "Bias": rng(5).normal(size=(1, 1, 4)).astype(np.float32)}
    (y,), _ = layer.forward([x], p, {}, True)
    ref = dlconv(x, p["Weights"], p["Bias"], Stride=2, DilationFactor=[1, 2],
                 Padding=np.array([[1, 2], [0, 1]]))
    assert y.fmt == "SSCB" and y.shape == ref.shape
    close(y, ref)


def test_convolution_same_padding_and_user_weights():
    w = rng().normal(size=(3, 3, 3, 2)).astype(np.float32)
    b = np.array([0.5, -1.0])
    layer = ly.convolution2dLayer(3, 2, Padding="same", Weights=w, Bias=b)
    x = image(5, 4, 3)
    (y,), p, *_ = run(layer, x)
    np.testing.assert_array_equal(p["Weights"], w)
    assert p["Bias"].shape == (1, 1, 2)
    close(y, dlconv(x, w, b, Padding="same"))
    assert y.shape == (5, 4, 2, 2)


def test_convolution_initializers_and_seeding():
    x = image()
    a = ly.convolution2dLayer(3, 4, WeightsInitializer="he", BiasInitializer="ones")
    _, pa, *_ = run(a, x, seed=4)
    _, pb, *_ = run(a, x, seed=4)
    np.testing.assert_array_equal(pa["Weights"], pb["Weights"])
    assert np.all(pa["Bias"] == 1)
    z = ly.convolution2dLayer(3, 4, WeightsInitializer=lambda s: np.zeros(s))
    _, pz, *_ = run(z, x)
    assert np.all(pz["Weights"] == 0)


def test_convolution_errors_name_the_layer():
    w = np.zeros((3, 3, 2, 4), np.float32)
    layer = ly.convolution2dLayer(3, 4, Weights=w, Name="conv1")
    with pytest.raises(ShapeError, match=r"^conv1 \(2-D Convolution\): Weights \(3, 3, 2, 4\) "
                                         r"expect 2 input channels .* has 3"):
        layer.initialize([type_of(image())], rng())
    with pytest.raises(FormatError, match=r"^conv1 \(2-D Convolution\): expects input with 2 "
                                          r"spatial dimensions"):
        ly.convolution2dLayer(3, 4, Name="conv1").initialize([TensorType("f32", (3, 2), "CB")],
                                                            rng())
    big = ly.convolution2dLayer(7, 4, Name="big")
    p, _ = big.initialize([type_of(image())], rng())
    with pytest.raises(ShapeError, match=r"^big \(2-D Convolution\): dlconv: the filter"):
        big.forward([image()], p, {}, True)
    with pytest.raises(ShapeError, match=r"convolution2dLayer: WeightsInitializer must be one "
                                         r"of .*got 'xavier'"):
        ly.convolution2dLayer(3, 4, WeightsInitializer="xavier")
    with pytest.raises(ShapeError, match="convolution2dLayer: Weights must be"):
        ly.convolution2dLayer(3, 4, Weights=np.zeros((2, 2, 1, 4)))
    with pytest.raises(ShapeError, match="convolution2dLayer: numFilters must be a positive"):
        ly.convolution2dLayer(3, 0)
    with pytest.raises(ShapeError, match="convolution2dLayer: Padding must be"):
        ly.convolution2dLayer(3, 4, Padding=[1, 2, 3])


def test_transposed_convolution_shapes_and_forward_equal_dltranspconv():
    x = image(3, 4, 3)
    layer = ly.transposedConv2dLayer(3, 5, Stride=2, Cropping=1)
    (y,), p, *_ = run(layer, x)
    assert p["Weights"].shape == (3, 3, 5, 3) and p["Bias"].shape == (1, 1, 5)
    p["Bias"] = rng(2).normal(size=(1, 1, 5)).astype(np.float32)
    (y,), _ = layer.forward([x], p, {}, True)
    close(y, dltranspconv(x, p["Weights"], p["Bias"], Stride=2, Cropping=1))
    assert y.shape == (2 * 2 + 3 - 2, 3 * 2 + 3 - 2, 5, 2)
    same = ly.transposedConv2dLayer(4, 2, Stride=2, Cropping="same")
    (y,), *_ = run(same, x)
    assert y.shape == (6, 8, 2, 2)


# --- fully connected --------------------------------------------------------------------------


def test_fully_connected_shapes_forward_and_flatten():
    x = image(3, 2, 2)
    layer = ly.fullyConnectedLayer(5)
    (y,), p, *_ = run(layer, x)
    assert p["Weights"].shape == (5, 12) and p["Bias"].shape == (5, 1)
    assert y.fmt == "CB" and y.shape == (5, 2)
    close(y, fullyconnect(x, p["Weights"], p["Bias"]))
    # a flatten layer flattens as fullyconnect does: fc(flatten(X)) == fc(X)
    (flat,), *_ = run(ly.flattenLayer(), x)
    assert flat.fmt == "CB" and flat.shape == (12, 2)
    (y2,), _ = layer.forward([flat], p, {}, True)
    close(y2, y)
    (ys,), ps, *_ = run(ly.fullyConnectedLayer(4), seq())
    assert ps["Weights"].shape == (4, 3) and ys.fmt == "CBT" and ys.shape == (4, 2, 4)


def test_fully_connected_errors_name_the_layer():
    layer = ly.fullyConnectedLayer(5, Weights=np.zeros((5, 7)), Name="fc1")
    with pytest.raises(ShapeError, match=r"^fc1 \(Fully Connected\): Weights \(5, 7\) expect 7 "
                                         r"input features but the input \(CB \(6, 1\)\) has 6"):
        layer.initialize([TensorType("f32", (6, 1), "CB")], rng())
    ok = ly.fullyConnectedLayer(5, Name="fc1")
    p, _ = ok.initialize([TensorType("f32", (6, 1), "CB")], rng())
    with pytest.raises(ShapeError, match=r"^fc1 \(Fully Connected\): fullyconnect: weights"):
        ok.forward([dlarray(np.zeros((7, 2), np.float32), "CB")], p, {}, True)
    with pytest.raises(FormatError, match=r"^fc1 \(Fully Connected\): input is unformatted"):
        ok.forward([np.zeros((6, 2), np.float32)], p, {}, True)


# --- normalization ----------------------------------------------------------------------------


def test_batchnorm_shapes_follow_the_input():
    _, p, s, _ = run(ly.batchNormalizationLayer(), image(c=3))
    assert {k: v.shape for k, v in {**p, **s}.items()} == {
        "Offset": (1, 1, 3), "Scale": (1, 1, 3), "TrainedMean": (1, 1, 3),
        "TrainedVariance": (1, 1, 3)}
    assert np.all(p["Offset"] == 0) and np.all(p["Scale"] == 1)
    assert np.all(s["TrainedMean"] == 0) and np.all(s["TrainedVariance"] == 1)
    _, p, s, _ = run(ly.batchNormalizationLayer(), seq(c=4))
    assert p["Offset"].shape == (4, 1) and s["TrainedVariance"].shape == (4, 1)
    _, p, s, _ = run(ly.batchNormalizationLayer(), dlarray(np.ones((4, 3), np.float32), "CB"))
    assert p["Scale"].shape == (4, 1)


def test_batchnorm_training_updates_state_and_predict_uses_it():
    x = image(c=3)
    layer = ly.batchNormalizationLayer(MeanDecay=0.3, VarianceDecay=0.2, Epsilon=1e-3)
    params, state = layer.initialize([type_of(x)], rng())
    params = {"Offset": np.array([0.1, 0.2, 0.3], np.float32).reshape(1, 1, 3),
              "Scale": np.array([1.0, 2.0, 0.5], np.float32).reshape(1, 1, 3)}
    state = {"TrainedMean": np.full((1, 1, 3), 0.5, np.float32),
             "TrainedVariance": np.full((1, 1, 3), 2.0, np.float32)}
    (y,), new = layer.forward([x], params, state, True)
    ry, rm, rv = batchnorm(x, params["Offset"], params["Scale"], state["TrainedMean"],
                           state["TrainedVariance"], MeanDecay=0.3, VarianceDecay=0.2,
                           Epsilon=1e-3)
    close(y, ry)
    close(new["TrainedMean"], rm)
    close(new["TrainedVariance"], rv)
    assert new["TrainedMean"].shape == (1, 1, 3)
    assert np.all(state["TrainedMean"] == 0.5)  # forward does not mutate
    (yp,), same = layer.forward([x], params, new, False)
    close(yp, batchnorm(x, params["Offset"], params["Scale"], new["TrainedMean"],
                        new["TrainedVariance"], Training=False, Epsilon=1e-3))
    assert same.keys() == new.keys()
    close(same["TrainedMean"], new["TrainedMean"])
    assert not np.allclose(extractdata(yp), extractdata(y), atol=1e-3)


def test_batchnorm_user_statistics_and_errors():
    layer = ly.batchNormalizationLayer(TrainedMean=np.arange(3.0), Name="bn1")
    _, s = layer.initialize([type_of(image(c=3))], rng())
    np.testing.assert_array_equal(s["TrainedMean"].ravel(), [0, 1, 2])
    assert s["TrainedMean"].shape == (1, 1, 3)
    with pytest.raises(ShapeError, match=r"^bn1 \(Batch Normalization\): TrainedMean has 3 "
                                         r"elements but the input .* has 4 channels"):
        layer.initialize([type_of(image(c=4))], rng())
    with pytest.raises(ShapeError, match="batchNormalizationLayer: MeanDecay must be"):
        ly.batchNormalizationLayer(MeanDecay=2)


def test_group_layer_and_cross_channel_normalization_equal_their_functions():
    x = image(c=4)
    (y,), p, *_ = run(ly.groupNormalizationLayer(2), x)
    assert p["Offset"].shape == (1, 1, 4)
    p = {"Offset": rng(1).normal(size=(1, 1, 4)).astype(np.float32),
         "Scale": rng(2).normal(size=(1, 1, 4)).astype(np.float32)}
    (y,), _ = ly.groupNormalizationLayer(2).forward([x], p, {}, True)
    close(y, groupnorm(x, 2, p["Offset"], p["Scale"]))
    (y,), _ = ly.groupNormalizationLayer("channel-wise").forward([x], p, {}, False)
    close(y, groupnorm(x, "channel-wise", p["Offset"], p["Scale"]))
    (y,), _ = ly.layerNormalizationLayer(Epsilon=1e-3).forward([x], p, {}, True)
    close(y, layernorm(x, p["Offset"], p["Scale"], Epsilon=1e-3))
    s = seq(c=4)
    (ys,), ps, *_ = run(ly.layerNormalizationLayer(), s)
    assert ps["Scale"].shape == (4, 1)
    close(ys, layernorm(s, ps["Offset"], ps["Scale"]))
    (y,), *_ = run(ly.crossChannelNormalizationLayer(3, Alpha=0.1, Beta=0.5, K=1.5), x)
    close(y, crosschannelnorm(x, 3, Alpha=0.1, Beta=0.5, K=1.5))
    with pytest.raises(ShapeError, match=r"^gn \(Group Normalization\): NumGroups 3 does not "
                                         r"divide the 4 channels"):
        ly.groupNormalizationLayer(3, Name="gn").initialize([type_of(x)], rng())


# --- activations and dropout ------------------------------------------------------------------


@pytest.mark.parametrize("layer, fn", [
    (ly.reluLayer(), relu), (ly.leakyReluLayer(0.2), lambda x: leakyrelu(x, 0.2)),
    (ly.sigmoidLayer(), sigmoid), (ly.tanhLayer(), tanh), (ly.softmaxLayer(), softmax),
], ids=lambda v: getattr(v, "Type", ""))
def test_activation_layers_equal_their_functions(layer, fn):
    x = image()
    for training in (True, False):
        (y,), *_ = run(layer, x, training=training)
        assert y.fmt == x.fmt
        close(y, fn(x))


def test_leaky_relu_default_scale():
    assert ly.leakyReluLayer().Scale == 0.01


def test_dropout_is_on_in_training_and_the_identity_in_predict():
    x = dlarray(np.ones((50, 40), np.float32), "CB")
    layer = ly.dropoutLayer(0.25)
    assert ly.dropoutLayer().Probability == 0.5
    (yp,), *_ = run(layer, x, training=False)
    close(yp, x)
    lgc.rng(0)
    (yt,), *_ = run(layer, x, training=True)
    v = extractdata(yt)
    assert set(np.unique(v)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.2 < np.mean(v == 0) < 0.3
    with pytest.raises(ShapeError, match="dropoutLayer: probability"):
        ly.dropoutLayer(1.0)


# --- pooling ----------------------------------------------------------------------------------


def test_pooling_layers_equal_their_functions():
    x = image(6, 5, 2)
    (y,), *_ = run(ly.maxPooling2dLayer(2, Stride=2, Padding=[0, 1, 0, 1]), x)
    close(y, maxpool(x, 2, Stride=2, Padding=np.array([[0, 0], [1, 1]])))
    (y,), *_ = run(ly.maxPooling2dLayer([3, 2], Padding="same"), x)
    close(y, maxpool(x, [3, 2], Padding="same"))
    (y,), *_ = run(ly.averagePooling2dLayer(2, Stride=2, Padding=1, PaddingValue="mean"), x)
    close(y, avgpool(x, 2, Stride=2, Padding=1, PaddingValue="mean"))
    (y,), *_ = run(ly.globalAveragePooling2dLayer(), x)
    assert y.fmt == "SSCB" and y.shape == (1, 1, 2, 2)
    close(y, extractdata(x).mean(axis=(0, 1), keepdims=True))
    (y,), *_ = run(ly.globalMaxPooling2dLayer(), x)
    close(y, extractdata(x).max(axis=(0, 1), keepdims=True))


def test_max_unpooling_scatters_to_the_pooling_outputs():
    x = image(4, 4, 2)
    pool = ly.maxPooling2dLayer(2, Stride=2, HasUnpoolingOutputs=True)
    (y, idx, size), *_ = run(pool, x)
    assert idx.shape == y.shape and tuple(np.asarray(size)) == x.shape
    unpool = ly.maxUnpooling2dLayer()
    (u,), *_ = run(unpool, y, idx, size)
    assert u.shape == x.shape and u.fmt == "SSCB"
    xd, ud = extractdata(x), extractdata(u)
    mask = ud != 0
    np.testing.assert_array_equal(ud[mask], xd[mask])
    assert mask.sum() == y.size
    with pytest.raises(ShapeError, match=r"^up \(2-D Max Unpooling\): expects 3 inputs"):
        ly.maxUnpooling2dLayer(Name="up").initialize([type_of(y)], rng())


# --- combination ------------------------------------------------------------------------------


def test_addition_and_concatenation_layers():
    a, b, c = image(seed=1), image(seed=2), image(seed=3)
    (y,), *_ = run(ly.additionLayer(3), a, b, c)
    close(y, extractdata(a) + extractdata(b) + extractdata(c))
    (y,), *_ = run(ly.depthConcatenationLayer(2), a, image(c=5, seed=4))
    assert y.fmt == "SSCB" and y.shape == (5, 4, 8, 2)
    (y,), *_ = run(ly.concatenationLayer(3, 2), a, b)  # 0-based: B of "SSCB"
    assert y.shape == (5, 4, 3, 4)
    close(y, np.concatenate([extractdata(a), extractdata(b)], axis=3))
    (y,), _ = ly.additionLayer(2).forward({"in1": a, "in2": b}, {}, {}, True)
    close(y, extractdata(a) + extractdata(b))


def test_combination_errors_name_the_layer_and_both_sides():
    a = image()
    with pytest.raises(ShapeError, match=r"^add \(Addition\): inputs must have the same size; "
                                         r"in1 is \(5, 4, 3, 2\) but in2 is \(5, 4, 2, 2\)"):
        ly.additionLayer(2, Name="add").initialize([type_of(a), type_of(image(c=2))], rng())
    with pytest.raises(FormatError, match=r"^add \(Addition\): inputs must have the same "
                                          r"format; in1 is SSCB"):
        ly.additionLayer(2, Name="add").forward([a, dlarray(np.ones((3, 2), np.float32), "CB")],
                                               {}, {}, True)
    with pytest.raises(ShapeError, match=r"^add \(Addition\): expects 2 inputs"):
        ly.additionLayer(2, Name="add").initialize([type_of(a)], rng())
    with pytest.raises(ShapeError, match=r"^cat \(Depth concatenation\): inputs must agree in "
                                         r"every dimension but C"):
        ly.depthConcatenationLayer(2, Name="cat").initialize(
            [type_of(a), type_of(image(h=3))], rng())
    with pytest.raises(ShapeError, match="additionLayer: numInputs must be at least 2"):
        ly.additionLayer(1)


def test_flatten_keeps_time_and_passes_vectors_through():
    x = dlarray(rng().normal(size=(2, 3, 4, 2, 5)).astype(np.float32), "SSCBT")
    (y,), *_ = run(ly.flattenLayer(), x)
    assert y.fmt == "CBT" and y.shape == (24, 2, 5)
    # MATLAB order: first S fastest, C slowest
    xd = extractdata(x)
    np.testing.assert_array_equal(extractdata(y)[1, 0, 0], xd[1, 0, 0, 0, 0])
    np.testing.assert_array_equal(extractdata(y)[2, 0, 0], xd[0, 1, 0, 0, 0])
    np.testing.assert_array_equal(extractdata(y)[6, 0, 0], xd[0, 0, 1, 0, 0])
    s = seq()
    (y,), *_ = run(ly.flattenLayer(), s)
    close(y, s)


# --- recurrent --------------------------------------------------------------------------------


def test_lstm_shapes_state_and_forward_equal_lstm():
    x = seq(c=3, n=2, t=4)
    layer = ly.lstmLayer(5)
    (y,), p, s, new = run(layer, x)
    assert {k: v.shape for k, v in p.items()} == {
        "InputWeights": (20, 3), "RecurrentWeights": (20, 5), "Bias": (20, 1)}
    assert s["HiddenState"].shape == (5, 1) and np.all(s["CellState"] == 0)
    np.testing.assert_array_equal(p["Bias"].ravel(), np.repeat([0, 1, 0, 0], 5))  # forget gate
    r = p["RecurrentWeights"].astype(np.float64)
    np.testing.assert_allclose(r.T @ r, np.eye(5), atol=1e-5)  # orthogonal
    ry, rh, rc = lstm(x, s["HiddenState"], s["CellState"], p["InputWeights"],
                      p["RecurrentWeights"], p["Bias"])
    assert y.fmt == "CBT" and y.shape == (5, 2, 4)
    close(y, ry)
    assert new["HiddenState"].shape == (5, 2) and new["CellState"].shape == (5, 2)
    close(new["HiddenState"], rh)
    close(new["CellState"], rc)
    # the returned state is the next call's initial state
    (y2,), _ = layer.forward([x], p, new, True)
    close(y2, lstm(x, rh, rc, p["InputWeights"], p["RecurrentWeights"], p["Bias"])[0])
    (last,), *_ = run(ly.lstmLayer(5, OutputMode="last"), x)
    assert last.fmt == "CB"
    close(last, rh)


def test_lstm_user_state_and_errors():
    h0 = np.arange(4.0)
    layer = ly.lstmLayer(4, HiddenState=h0, CellState=np.ones(4), Name="lstm1")
    _, s = layer.initialize([type_of(seq())], rng())
    np.testing.assert_array_equal(s["HiddenState"].ravel(), h0)
    assert s["CellState"].shape == (4, 1)
    bad = ly.lstmLayer(4, InputWeights=np.zeros((16, 5)), Name="lstm1")
    with pytest.raises(ShapeError, match=r"^lstm1 \(LSTM\): InputWeights \(16, 5\) expect 5 input "
                                         r"features but the input \(CBT \(3, 1, 1\)\) has 3"):
        bad.initialize([TensorType("f32", (3, 1, 1), "CBT")], rng())
    with pytest.raises(ShapeError, match=r"lstmLayer: RecurrentWeights must be \(16, 4\)"):
        ly.lstmLayer(4, RecurrentWeights=np.zeros((16, 3)))
    with pytest.raises(ShapeError, match="lstmLayer: OutputMode must be"):
        ly.lstmLayer(4, OutputMode="all")


def test_gru_shapes_and_forward_equal_gru():
    x = seq(c=3, n=2, t=3)
    (y,), p, s, new = run(ly.gruLayer(4), x)
    assert {k: v.shape for k, v in p.items()} == {
        "InputWeights": (12, 3), "RecurrentWeights": (12, 4), "Bias": (12, 1)}
    assert set(s) == {"HiddenState"} and s["HiddenState"].shape == (4, 1)
    assert np.all(p["Bias"] == 0)
    ry, rh = gru(x, s["HiddenState"], p["InputWeights"], p["RecurrentWeights"], p["Bias"])
    close(y, ry)
    close(new["HiddenState"], rh)
    layer = ly.gruLayer(4, ResetGateMode="recurrent-bias-after-multiplication", OutputMode="last",
                       BiasInitializer="narrow-normal")
    (y,), p, s, _ = run(layer, x)
    assert p["Bias"].shape == (24, 1) and y.fmt == "CB"
    close(y, gru(x, s["HiddenState"], p["InputWeights"], p["RecurrentWeights"], p["Bias"],
                 ResetGateMode="recurrent-bias-after-multiplication")[1])


def test_embedding_layer():
    idx = dlarray(np.array([[[0, 3, 9]], [[2, 2, 1]]], np.float32).transpose(1, 0, 2), "CBT")
    layer = ly.embeddingLayer(4, 10)
    (y,), p, *_ = run(layer, idx)
    assert p["Weights"].shape == (4, 10) and y.fmt == "CBT" and y.shape == (4, 2, 3)
    assert p["Weights"].std() < 0.05  # narrow-normal
    close(y, embed(idx, p["Weights"]))
    with pytest.raises(ShapeError, match=r"^emb \(Embedding\): embed: indices must be in"):
        ly.embeddingLayer(4, 10, Name="emb").forward([idx + 1.0], p, {}, True)


# --- function layer ---------------------------------------------------------------------------


def test_function_layer_formattable_and_not():
    x = image()
    swish = ly.functionLayer(lambda v: v * sigmoid(v))
    (y,), *_ = run(swish, x)
    close(y, extractdata(x) / (1 + np.exp(-extractdata(x))))
    seen = []
    plain = ly.functionLayer(lambda v: seen.append(v.fmt) or v * 2.0, Formattable=False)
    (y,), *_ = run(plain, x)
    assert seen == [""] and y.fmt == "SSCB"
    close(y, 2 * extractdata(x))
    two = ly.functionLayer(lambda a, b: (a + b, a - b), NumInputs=2, NumOutputs=2)
    (s, d), *_ = run(two, x, x)
    close(s, 2 * extractdata(x))
    close(d, np.zeros(x.shape))
    bad = ly.functionLayer(lambda v: np.asarray(v), Name="f")
    with pytest.raises(FormatError, match=r"^f \(Function\): the function returned an "
                                          r"unformatted array"):
        run(bad, x)
    wrong = ly.functionLayer(lambda v: v, NumOutputs=2, Name="f")
    with pytest.raises(ShapeError, match=r"^f \(Function\): the function returned 1 outputs"):
        run(wrong, x)


# --- factors ----------------------------------------------------------------------------------


def test_learn_rate_and_l2_factors():
    conv = ly.convolution2dLayer(3, 4, WeightLearnRateFactor=2, BiasL2Factor=0.5)
    assert conv.learn_rate_factor("Weights") == 2 and conv.learn_rate_factor("Bias") == 1
    assert conv.l2_factor("Weights") == 1 and conv.l2_factor("Bias") == 0.5
    fc = ly.fullyConnectedLayer(3)
    assert fc.l2_factor("Bias") == 0 and fc.learn_rate_factor("Weights") == 1
    bn = ly.batchNormalizationLayer(ScaleLearnRateFactor=0, OffsetL2Factor=3)
    assert bn.learn_rate_factor("Scale") == 0 and bn.l2_factor("Offset") == 3
    assert bn.l2_factor("Scale") == 1
    rnn = ly.lstmLayer(3, RecurrentWeightsL2Factor=0.1, InputWeightsLearnRateFactor=4)
    assert rnn.l2_factor("RecurrentWeights") == pytest.approx(0.1)
    assert rnn.learn_rate_factor("InputWeights") == 4 and rnn.l2_factor("Bias") == 0
    emb = ly.embeddingLayer(3, 5, WeightL2Factor=2)
    assert emb.l2_factor("Weights") == 2
    with pytest.raises(ShapeError, match="fullyConnectedLayer: WeightL2Factor must be a "
                                         "non-negative"):
        ly.fullyConnectedLayer(3, WeightL2Factor=-1)


# --- tracing ----------------------------------------------------------------------------------


def _chain(layers, params, states, x, training):
    new_states = []
    for layer, p, s in zip(layers, params, states):
        (x,), ns = layer.forward([x], p, s, training)
        new_states.append(ns)
    return x, new_states


def test_layers_trace_inside_dlfeval_with_gradients():
    x = image(6, 6, 2, n=3)
    layers = [ly.convolution2dLayer(3, 4, Padding="same"), ly.batchNormalizationLayer(),
              ly.reluLayer(), ly.maxPooling2dLayer(2, Stride=2), ly.fullyConnectedLayer(3),
              ly.softmaxLayer()]
    t, params, states = type_of(x), [], []
    for layer in layers:
        p, s = layer.initialize([t], rng(len(params)))
        params.append(p)
        states.append(s)
        (y,), _ = layer.forward([dlarray(np.zeros(t.shape, np.float32), t.fmt)], p, s, False)
        t = type_of(y)

    def loss_fn(params, x):
        y, new_states = _chain(layers, params, states, x, True)
        loss = lgc.sum(y * y)
        return loss, dlgradient(loss, params), new_states

    loss, grads, new_states = dlfeval(loss_fn, params, x)
    eager, eager_states = _chain(layers, params, states, x, True)
    np.testing.assert_allclose(float(extractdata(loss)),
                               float(np.sum(extractdata(eager) ** 2)), rtol=1e-5)
    assert grads[0]["Weights"].shape == (3, 3, 2, 4) and grads[1]["Scale"].shape == (1, 1, 4)
    assert np.any(extractdata(grads[4]["Weights"]) != 0)
    close(new_states[1]["TrainedMean"], eager_states[1]["TrainedMean"])


def test_lstm_traces_inside_dlfeval():
    x = seq(c=3, n=2, t=3)
    layer = ly.lstmLayer(4, OutputMode="last")
    p, s = layer.initialize([type_of(x)], rng())

    def f(p, x):
        (y,), ns = layer.forward([x], p, s, True)
        loss = lgc.sum(y)
        return loss, dlgradient(loss, p["RecurrentWeights"]), ns

    loss, g, ns = dlfeval(f, p, x)
    (y,), ens = layer.forward([x], p, s, True)
    np.testing.assert_allclose(float(extractdata(loss)), float(np.sum(extractdata(y))),
                               rtol=1e-5)
    assert g.shape == (16, 4)
    close(ns["HiddenState"], ens["HiddenState"])


TRACED_CASES = [
    ("conv", lambda: ly.convolution2dLayer(2, 3, Stride=2, Padding=1), [image()]),
    ("transposed-conv", lambda: ly.transposedConv2dLayer(2, 2, Stride=2), [image()]),
    ("fc", lambda: ly.fullyConnectedLayer(4), [image()]),
    ("batchnorm", lambda: ly.batchNormalizationLayer(), [image()]),
    ("groupnorm", lambda: ly.groupNormalizationLayer("all-channels"), [image()]),
    ("layernorm", lambda: ly.layerNormalizationLayer(), [seq()]),
    ("crossnorm", lambda: ly.crossChannelNormalizationLayer(2), [image()]),
    ("leakyrelu", lambda: ly.leakyReluLayer(), [image()]),
    ("avgpool", lambda: ly.averagePooling2dLayer(2), [image()]),
    ("gapool", lambda: ly.globalAveragePooling2dLayer(), [image()]),
    ("addition", lambda: ly.additionLayer(2), [image(seed=1), image(seed=2)]),
    ("concat", lambda: ly.concatenationLayer(0, 2), [image(seed=1), image(seed=2)]),
    ("flatten", lambda: ly.flattenLayer(), [image()]),
    ("gru", lambda: ly.gruLayer(3), [seq()]),
    ("embedding", lambda: ly.embeddingLayer(3, 5),
     [dlarray(np.array([[[0, 4], [1, 2]]], np.float32), "CBT")]),
    ("imageinput", lambda: ly.imageInputLayer([5, 4, 3], Mean=np.ones(3)), [image()]),
    ("function", lambda: ly.functionLayer(lambda a: tanh(a) * 2.0), [image()]),
]


@pytest.mark.parametrize("make, xs", [pytest.param(m, x, id=i) for i, m, x in TRACED_CASES])
def test_forward_traced_in_dlfeval_equals_eager(make, xs):
    layer = make()
    params, state = layer.initialize([type_of(x) for x in xs], rng())

    def f(params, state, *xs):
        outs, new_state = layer.forward(list(xs), params, state, True)
        loss = lgc.sum(outs[0] * outs[0])
        grads = dlgradient(loss, params) if params else {}
        return outs[0], new_state, grads

    y, new_state, grads = dlfeval(f, params, state, *xs)
    (ey,), e_state = layer.forward(list(xs), params, state, True)
    assert y.fmt == ey.fmt
    close(y, ey)
    assert set(new_state) == set(e_state)
    for k in new_state:
        close(new_state[k], e_state[k])
    assert {k: g.shape for k, g in grads.items()} == {k: v.shape for k, v in params.items()}


def test_lstm_state_from_another_batch_size_is_an_error_naming_the_layer():
    layer = ly.lstmLayer(4, Name="lstm1")
    (y,), p, s, new = run(layer, seq(n=3))
    with pytest.raises(ShapeError, match=r"^lstm1 \(LSTM\): lstm: H0 must have 4 elements or "
                                         r"size \(4, 2\)"):
        layer.forward([seq(n=2)], p, new, True)


def test_dropout_traced_in_dlfeval_draws_a_mask():
    layer = ly.dropoutLayer(0.5)
    x = dlarray(np.ones((40, 30), np.float32), "CB")
    y = dlfeval(lambda x: layer.forward([x], {}, {}, True)[0][0], x)
    v = extractdata(y)
    assert set(np.unique(v)) == {0.0, 2.0}
    yp = dlfeval(lambda x: layer.forward([x], {}, {}, False)[0][0], x)
    close(yp, x)
