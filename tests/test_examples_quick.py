"""Every MATLAB documentation example in examples/ runs in --quick mode on the compiled (Numba)
backend: a few iterations on a subset, each script asserting that its loss went down."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import lgc

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(autouse=True)
def numba_backend():
    old = lgc.get_backend()
    lgc.set_backend("numba")
    yield
    lgc.set_backend(old)


def load(name: str):
    sys.path.insert(0, str(EXAMPLES))  # the examples import their shared _data module
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def went_down(losses) -> bool:
    return np.mean(losses[-2:]) < np.mean(losses[:2])


def test_custom_training_loop_quick():
    out = load("custom_training_loop").main(["--quick"])
    assert went_down(out["losses"]) and 0 <= out["accuracy"] <= 1


def test_model_function_quick():
    out = load("model_function").main(["--quick"])
    assert went_down(out["losses"]) and np.isfinite(out["rmse"])


def test_gan_quick_writes_a_png(tmp_path):
    out = load("gan").main(["--quick", "--out", str(tmp_path)])
    assert went_down(out["lossD"])
    png = tmp_path / "gan_digits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_siamese_quick():
    out = load("siamese").main(["--quick"])
    assert went_down(out["losses"]) and 0 <= out["accuracy"] <= 1


def test_wgan_gp_quick_writes_a_png(tmp_path):
    out = load("wgan_gp").main(["--quick", "--out", str(tmp_path)])
    assert np.mean(out["lossD"][-3:]) < np.mean(out["lossD"][:3])
    assert (tmp_path / "wgan_gp_digits.png").stat().st_size > 0


def test_sequence_classification_quick():
    out = load("sequence_classification").main(["--quick"])
    assert set(out) == {"lstm", "gru", "embed"}
    assert all(went_down(r["losses"]) for r in out.values())


def test_residual_trainnet_quick_writes_the_diagram_and_plot(tmp_path):
    out = load("residual_trainnet").main(["--quick", "--out", str(tmp_path)])
    assert went_down(out["losses"])
    for name in ("residual_network.png", "residual_training.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
