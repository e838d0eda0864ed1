"""lgc.save / lgc.load: round trip bit for bit, atomic writes to exactly `path`, no pickle, and
clear errors for code (functionLayer), truncated, modified and newer-version files."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

import lgc
from lgc.dlnetwork import DLNetwork, dlnetwork, forward, predict
from lgc.io import NetworkFileError, load, save
from lgc.layers import (
    batchNormalizationLayer,
    convolution2dLayer,
    fullyConnectedLayer,
    functionLayer,
    imageInputLayer,
    maxPooling2dLayer,
    reluLayer,
    softmaxLayer,
)
from lgc.network import LayerGraph, layerGraph
from test_network import Add, Dense, RunNorm, Split, VecInput, x_cb


def small_net():
    lgc.rng(0)
    lg = layerGraph([VecInput(3, Name="in"), RunNorm(Name="norm"), Split(Name="sp"),
                     Add(Name="add"), Dense(2, Name="fc")]).connectLayers("sp/neg", "add/in2")
    return dlnetwork(lg)


def cnn():
    lgc.rng(1)
    return dlnetwork([imageInputLayer([6, 6, 2], Normalization="zerocenter",
                                      Mean=np.full((6, 6, 2), 0.25)),
                      convolution2dLayer(3, 4, Padding="same", Name="conv"),
                      batchNormalizationLayer(Name="bn"), reluLayer(),
                      maxPooling2dLayer(2, Stride=2), fullyConnectedLayer(3), softmaxLayer()])


def image_batch(n=2):
    return lgc.dlarray(np.random.default_rng(4).normal(size=(6, 6, 2, n)).astype(np.float32),
                       "SSCB")


def test_round_trip_is_bit_identical(tmp_path):
    net = small_net()
    _, state = forward(net, x_cb(n=4))
    net.State = state  # a non-trivial state travels too
    path = tmp_path / "net.lgc"
    save(path, net)
    back = load(path)
    assert isinstance(back, DLNetwork) and back.Initialized
    assert back.Learnables.Layer == net.Learnables.Layer
    assert back.State.Parameter == net.State.Parameter
    assert back.InputNames == net.InputNames and back.OutputNames == net.OutputNames
    assert back.Connections.Source == net.Connections.Source
    for u, v in zip(back.Learnables.Value + back.State.Value,
                    net.Learnables.Value + net.State.Value):
        assert u.dtype == v.dtype and u.fmt == v.fmt
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    x = x_cb(n=3, seed=8)
    np.testing.assert_array_equal(np.asarray(predict(back, x)), np.asarray(predict(net, x)))


def test_real_layers_round_trip_bit_identical(tmp_path):
    net = cnn()
    save(tmp_path / "cnn", net)
    back = load(tmp_path / "cnn")
    assert [type(la) for la in back.Layers] == [type(la) for la in net.Layers]
    for a, b in zip(back.Layers, net.Layers):
        pa, pb = a.properties(), b.properties()
        assert pa.keys() == pb.keys()
        for k in pa:
            np.testing.assert_array_equal(np.asarray(pa[k], dtype=object),
                                          np.asarray(pb[k], dtype=object), err_msg=k)
    x = image_batch()
    np.testing.assert_array_equal(np.asarray(predict(back, x)), np.asarray(predict(net, x)))
    y1, s1 = forward(back, x)
    y2, s2 = forward(net, x)
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))


def test_written_to_exactly_path_atomically_and_without_pickle(tmp_path):
    path = tmp_path / "model.weights"
    save(path, small_net())
    assert sorted(os.listdir(tmp_path)) == ["model.weights"]  # no extension, no temp left
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
        assert z.read("manifest.sha256").decode() == hashlib.sha256(
            z.read("manifest.json")).hexdigest()
        for name in names:
            if name.endswith(".npy"):
                np.load(z.open(name), allow_pickle=False)  # plain arrays only
    assert manifest["format"] == "lgc-network" and manifest["version"] == 1
    assert [la["class"].rsplit(".", 1)[1] for la in manifest["layers"]] == [
        "VecInput", "RunNorm", "Split", "Add", "Dense"]
    assert ["sp", "neg", "add", "in2"] in manifest["connections"]
    assert [r[:2] for r in manifest["learnables"]] == [["fc", "Weights"], ["fc", "Bias"]]


def test_a_failed_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "net.lgc"
    save(path, small_net())
    before = path.read_bytes()
    bad = dlnetwork([VecInput(3), functionLayer(lambda x: x * 2, Name="f")])
    with pytest.raises(NetworkFileError, match="functionLayer"):
        save(path, bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["net.lgc"]


def test_function_layer_error_names_the_layer(tmp_path):
    net = dlnetwork([VecInput(3), functionLayer(lambda x: x * 2, Name="double")])
    with pytest.raises(NetworkFileError, match="'double'"):
        save(tmp_path / "f.lgc", net)


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / "net.lgc"
    save(path, small_net())
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 10):
        path.write_bytes(data[:cut])
        with pytest.raises(NetworkFileError):
            load(path)


def test_flipped_byte_is_rejected(tmp_path):
    path = tmp_path / "net.lgc"
    save(path, small_net())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("arrays/0.npy")
    k = info.header_offset + 30 + len(info.filename) + info.file_size - 3  # inside the data
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NetworkFileError, match="modified|damaged"):
        load(path)


def rewrite(path, edit_manifest=None, edit_array=None, rehash=False):
    """Rewrite the zip (valid CRCs) with an edited manifest or array."""
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    if edit_manifest:
        m = json.loads(entries["manifest.json"])
        edit_manifest(m)
        entries["manifest.json"] = json.dumps(m).encode()
        if rehash:
            entries["manifest.sha256"] = hashlib.sha256(entries["manifest.json"]).hexdigest(
            ).encode()
    if edit_array:
        entries[edit_array] = entries[edit_array][:-8] + np.float64(123.0).tobytes()
    with zipfile.ZipFile(path, "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)


def test_edited_manifest_is_rejected(tmp_path):
    path = tmp_path / "net.lgc"
    save(path, small_net())
    rewrite(path, edit_manifest=lambda m: m["connections"].pop())
    with pytest.raises(NetworkFileError, match="checksum mismatch for the manifest"):
        load(path)


def test_edited_array_is_rejected(tmp_path):
    path = tmp_path / "net.lgc"
    save(path, small_net())
    rewrite(path, edit_array="arrays/0.npy")
    with pytest.raises(NetworkFileError, match="checksum mismatch for arrays/0.npy"):
        load(path)


def test_newer_version_is_rejected(tmp_path):
    path = tmp_path / "net.lgc"
    save(path, small_net())
    rewrite(path, edit_manifest=lambda m: m.update(version=2), rehash=True)
    with pytest.raises(NetworkFileError, match="version 2.*newer lgc"):
        load(path)


def test_not_a_network_file(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(NetworkFileError, match="not an lgc network file"):
        load(path)
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(NetworkFileError, match="not an lgc network file"):
        load(tmp_path / "t.txt")


def test_layer_graph_round_trip(tmp_path):
    lg = layerGraph([VecInput(3, Name="in"), Split(Name="sp"), Add(Name="add")])
    lg = lg.connectLayers("sp/neg", "add/in2")
    save(tmp_path / "g", lg)
    back = load(tmp_path / "g")
    assert isinstance(back, LayerGraph)
    assert back.Connections.Source == lg.Connections.Source
    assert back.Connections.Destination == lg.Connections.Destination
