"""Layers: parameter shapes per API.md §5 from the input type, forward equal to the MATLAB
function called directly with the same parameters, training versus predict, state and errors
that start with the layer's name and type (recurrent and function layers, factors and tracing
inside dlfeval: test_layers_tracing.py)."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from layer_helpers import close, image, rng, run, seq, type_of
from lgc import (
    FormatError,
    ShapeError,
    avgpool,
    batchnorm,
    crosschannelnorm,
    dlarray,
    dlconv,
    dltranspconv,
    extractdata,
    fullyconnect,
    groupnorm,
    layernorm,
    leakyrelu,
    maxpool,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from lgc import layers as ly
from lgc.ir.types import TensorType

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
