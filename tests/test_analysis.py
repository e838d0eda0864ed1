"""analyzeNetwork (API.md §5): each issue is produced by a small graph and names its layers;
activation sizes come from tracing the layers; the printed report is an aligned table."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from lgc.analysis import Issue, NetworkAnalysis, analyzeNetwork
from lgc.dlnetwork import dlnetwork
from lgc.errors import GraphError
from lgc.network import layerGraph
from test_network import Add, Dense, Relu, Split, VecInput, x_cb


def only(issues, severity, layer=None):
    found = [i for i in issues if i.Severity == severity and (layer is None or i.Layer == layer)]
    assert found, f"no {severity} for {layer}: {issues}"
    return found


def test_clean_chain_reports_sizes_and_learnables():
    a = analyzeNetwork(layerGraph([VecInput(3), Dense(4), Relu(), Dense(2)]))
    assert isinstance(a, NetworkAnalysis) and a.Issues == []
    assert a.LayerInfo.Name == ["input_1", "fc_1", "relu_1", "fc_2"]
    assert a.LayerInfo["fc_1"].ActivationSizes == {"out": (4, 1)}
    assert a.LayerInfo["fc_1"].ActivationFormats == {"out": "CB"}
    assert a.LayerInfo["fc_1"].LearnableSizes == {"Weights": (4, 3), "Bias": (4, 1)}
    assert a.LayerInfo["fc_1"].NumLearnables == 16
    assert a.LayerInfo["relu_1"].NumLearnables == 0
    assert a.TotalLearnables == 16 + 10
    assert a.LayerInfo["fc_1"].Type == "Test Dense"


def test_print_is_an_aligned_table_then_issues():
    lg = layerGraph([VecInput(3), Dense(4), Add(Name="add")])
    text = repr(analyzeNetwork(lg))
    lines = text.splitlines()
    header = next(k for k, ln in enumerate(lines) if ln.startswith("Name"))
    cols = lines[header].index("Type")
    for ln in lines[header + 2:header + 5]:
        assert ln[cols - 2:cols] == "  " and ln[cols] != " "  # Type column starts aligned
    assert "4x1 (CB)" not in text and "4x1 CB" in text
    assert "Weights 4x3, Bias 4x1" in text
    assert lines[-2] == "Issues:" and "add" in lines[-1] and "in2" in lines[-1]


def test_cycle_names_the_layers_on_it():
    lg = layerGraph([VecInput(3, Name="in"), Add(Name="a"), Relu(Name="r1"), Relu(Name="r2")])
    lg = lg.connectLayers("r2", "a/in2")
    (issue,) = only(analyzeNetwork(lg).Issues, "error")
    assert "cycle" in issue.Message
    for name in ("a", "r1", "r2"):
        assert name in issue.Message
    assert "in " not in issue.Message.replace("through", "")


def test_unconnected_input_port():
    lg = layerGraph([VecInput(3), Dense(4, Name="fc"), Add(Name="add")])
    (issue,) = only(analyzeNetwork(lg).Issues, "error", "add")
    assert "'in2'" in issue.Message and "not connected" in issue.Message


def test_unconnected_secondary_output_warns():
    lg = layerGraph([VecInput(3), Split(Name="sp"), Relu(Name="r")])
    issues = analyzeNetwork(lg).Issues
    (w,) = only(issues, "warning", "sp")
    assert "'neg'" in w.Message and "network output" in w.Message
    assert not [i for i in issues if i.Severity == "error"]
    # a single dangling "out" is just the network output: no issue
    assert analyzeNetwork(layerGraph([VecInput(3), Relu()])).Issues == []


def test_several_dangling_outputs_warn():
    lg = layerGraph([VecInput(3, Name="in"), Relu(Name="r1")])
    lg = lg.addLayers(Relu(Name="r2")).connectLayers("in", "r2")
    issues = analyzeNetwork(lg).Issues
    assert {i.Layer for i in only(issues, "warning")} == {"r1", "r2"}


def test_duplicate_names_in_a_layer_array():
    issues = analyzeNetwork([VecInput(3), Relu(Name="x"), Relu(Name="x")]).Issues
    (issue,) = only(issues, "error", "x")
    assert "duplicate" in issue.Message
    with pytest.raises(GraphError) as e:
        dlnetwork([VecInput(3), Relu(Name="x"), Relu(Name="x")])
    assert any("duplicate" in i.Message for i in e.value.issues)


def test_missing_input_layer():
    (issue,) = only(analyzeNetwork([Dense(4, Name="fc"), Relu()]).Issues, "error", "fc")
    assert "no input layer" in issue.Message and "fc/in" in issue.Message
    # with example inputs the unconnected input is the network input
    a = analyzeNetwork([Dense(4, Name="fc"), Relu()], x_cb())
    assert a.Issues == [] and a.LayerInfo["fc"].ActivationSizes == {"out": (4, 1)}


def test_wrong_number_of_inputs():
    issues = analyzeNetwork(layerGraph([Add(Name="add"), Relu()]), x_cb()).Issues
    (issue,) = only(issues, "error")
    assert "wrong number of inputs" in issue.Message and "add/in1, add/in2" in issue.Message


def test_size_mismatch_names_both_sides():
    lg = layerGraph([VecInput(3, Name="in"), Dense(4, Name="fc"), Add(Name="add")])
    lg = lg.connectLayers("in", "add/in2")
    a = analyzeNetwork(lg)
    (issue,) = only(a.Issues, "error", "add")
    assert "in1 <- fc 4x1 (CB)" in issue.Message and "in2 <- in 3x1 (CB)" in issue.Message
    assert a.LayerInfo["add"].ActivationSizes == {}  # unknown after the error
    assert a.LayerInfo["fc"].ActivationSizes == {"out": (4, 1)}


def test_format_mismatch_from_a_real_function():
    class NeedsSpatial(Relu):
        def forward(self, inputs, learnables, state, training):
            return [lgc.maxpool(inputs[0], 2)], {}

    a = analyzeNetwork([VecInput(3, Name="in"), NeedsSpatial(Name="pool")])
    (issue,) = only(a.Issues, "error", "pool")
    assert "maxpool" in issue.Message and "in <- in 3x1 (CB)" in issue.Message


def test_example_input_of_the_wrong_size_at_the_input_layer():
    a = analyzeNetwork([VecInput(3, Name="in"), Relu()], x_cb(c=5))
    (issue,) = only(a.Issues, "error", "in")
    assert "5" in issue.Message and "network input 5x1 (CB)" in issue.Message


def test_activation_sizes_use_batch_one_and_come_from_the_trace():
    a = analyzeNetwork([Dense(4, Name="fc")], x_cb(n=17))
    assert a.LayerInfo["fc"].ActivationSizes == {"out": (4, 1)}
    a = analyzeNetwork([VecInput(3), Split(Name="sp")])
    assert a.LayerInfo["sp"].ActivationSizes == {"out": (3, 1), "neg": (3, 1)}


def test_analyze_an_initialized_network_uses_its_learnables():
    net = dlnetwork([VecInput(3), Dense(5, Name="fc")])
    a = analyzeNetwork(net)
    assert a.LayerInfo["fc"].LearnableSizes == {"Weights": (5, 3), "Bias": (5, 1)}
    assert a.TotalLearnables == 20


def test_zerocenter_input_without_mean_warns():
    from lgc.layers.input import ImageInputLayer

    a = analyzeNetwork([ImageInputLayer([4, 4, 1], Name="img")])
    (w,) = only(a.Issues, "warning", "img")
    assert "Mean" in w.Message and "trainnet" in w.Message
    a = analyzeNetwork([ImageInputLayer([4, 4, 1], Name="img", Mean=np.zeros((4, 4, 1)))])
    assert a.Issues == []


def test_issue_prints_severity_layer_and_message():
    assert str(Issue("error", "fc", "boom")) == "error: fc: boom"
