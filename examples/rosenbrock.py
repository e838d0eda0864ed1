"""MATLAB's dlgradient example: the Rosenbrock function, its gradient, and its minimum.

MATLAB (documentation of dlgradient):

    function [y,dydx] = rosenbrock(x)
        y = 100*(x(2) - x(1).^2).^2 + (1 - x(1)).^2;
        dydx = dlgradient(y,x);
    end
    x0 = dlarray([-1,2]);
    [fval,gradval] = dlfeval(@rosenbrock,x0)    % fval = 104, gradval = [396 200]

Here it is in lgc (indices are 0-based), followed by gradient descent with momentum, which
finds the minimum at (1, 1).

    python examples/rosenbrock.py [--steps N]
"""

from __future__ import annotations

import argparse

import numpy as np

from lgc import dlarray, dlfeval, dlgradient, extractdata


def rosenbrock(x):
    y = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
    return y, dlgradient(y, x)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    args = ap.parse_args(argv)

    x0 = dlarray(np.array([-1.0, 2.0]))
    fval, gradval = dlfeval(rosenbrock, x0)
    print(f"fval = {float(fval):g}, gradval = {extractdata(gradval)}")

    x, velocity, lr, momentum = x0, np.zeros(2), 1e-3, 0.9
    for step in range(args.steps):
        y, g = dlfeval(rosenbrock, x)
        velocity = momentum * velocity - lr * extractdata(g)
        x = x + velocity
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:6d}  f = {float(y):.6g}  x = {extractdata(x)}")
    print(f"minimum near {extractdata(x)} (exact: [1. 1.])")
    return {"fval": float(fval), "grad": extractdata(gradval), "x": extractdata(x)}


if __name__ == "__main__":
    main()
