"""Every script in examples/ runs, and reproduces what its docstring states."""

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rosenbrock_matches_matlab_and_finds_the_minimum():
    out = load("rosenbrock").main(["--steps", "3000"])
    assert out["fval"] == 104.0
    np.testing.assert_allclose(out["grad"], [396.0, 200.0])
    np.testing.assert_allclose(out["x"], [1.0, 1.0], atol=0.05)
