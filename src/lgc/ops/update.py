"""Optimizer updates as multi-output elementwise ops over flat parameter buffers.

Inputs are flat arrays (parameters, gradients, optimizer state) followed by 0-d float64
hyperparameters: they are arguments, never attributes, so one compiled kernel serves every step
and every learning-rate schedule. The Numba lowering is one loop over all elements that may
write its outputs over its inputs (the update functions run it in place).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType, np_dtype
from .base import Lowering, OpDef, Sample, kernel_threads, register, split_loop


class _Update(OpDef):
    differentiable = False
    n_arrays = 0  # leading array inputs; the rest are 0-d hyperparameters
    n_hyper = 0
    # the body of the kernel's loop over i: reads the arrays at i, writes the outputs at i;
    # `scalars` are the values the loop uses, each (name, expression of the hyperparameters
    # named `hyper_names`); `kernel_scalars` evaluates them, the Numba kernel computes them
    body: list[str] = []
    arg_names: list[str] = []
    hyper_names: tuple[str, ...] = ()
    scalars: tuple[tuple[str, str], ...] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.scalar_names = tuple(name for name, _ in cls.scalars)
        cls._scalar_code = [compile(expr, f"<{cls.__name__} {name}>", "eval")
                            for name, expr in cls.scalars]

    def infer(self, in_types):
        arrays = in_types[:self.n_arrays]
        t0 = arrays[0]
        for t in arrays[1:]:
            if t.shape != t0.shape:
                raise ShapeError(f"{self.name}: every array must have shape {t0.shape}, got "
                                 f"{t.shape}")
        if len(in_types) != self.n_arrays + self.n_hyper:
            raise ShapeError(f"{self.name}: expected {self.n_arrays} arrays and {self.n_hyper} "
                             f"hyperparameters, got {len(in_types)} inputs")
        return [TensorType(t0.dtype, t0.shape) for _ in range(self.n_outputs)]

    def kernel_scalars(self, *hyper: float) -> tuple[float, ...]:
        """The scalars the kernel loop uses, derived once per call from the hyperparameters
        (in float64, then rounded to the parameters' dtype so the loop stays in it)."""
        names = {"np": np, **dict(zip(self.hyper_names, hyper))}
        return tuple(eval(code, names) for code in self._scalar_code)

    def lower_numba(self, node):
        # The loop updates in place: it reads and writes the outputs (o0 the parameters, o1..
        # the state after g), copied from the inputs first (`copy`) unless they are the inputs
        # (donated buffers). Distinct input and output pointers would keep LLVM from
        # vectorizing the loop (too many possible aliases); 5x slower, measured. The scalars
        # are computed in float64 from the 0-d hyperparameters (h0, h1, ... as 1-element
        # views), then rounded to the parameters' dtype.
        size = node.inputs[0].type.size
        dtype = np_dtype(node.inputs[0].dtype).type.__name__
        n = self.n_arrays
        arrays = self.arg_names[:n]
        state = [arrays[0]] + arrays[2:]  # what o0, o1, ... start from
        hyper = [f"h{k}" for k in range(len(self.hyper_names))]
        value = {name: f"{h}[0]" for name, h in zip(self.hyper_names, hyper)}
        read = {a: f"o{k}" for k, a in enumerate(state)}
        body = [re.sub(r"\b(\w+)\[i\]", lambda m: f"{read.get(m.group(1), m.group(1))}[i]", ln)
                for ln in self.body]
        outs = [f"o{k}" for k in range(len(state))]
        lines = [f"def kernel({', '.join(arrays + outs + hyper)}, copy):"]
        lines += [f"    {name} = np.{dtype}("
                  + re.sub(r"\b\w+\b", lambda m: value.get(m.group(0), m.group(0)), expr) + ")"
                  for name, expr in self.scalars]
        lines.append("    if copy:")
        lines.append(f"        for i in LOOP({arrays[0]}.shape[0]):")
        lines += [f"            {o}[i] = {a}[i]" for o, a in zip(outs, state)]
        lines.append(f"    for i in LOOP({arrays[0]}.shape[0]):")
        lines += [f"        {ln}" for ln in body]
        lines.append("    return 0")
        threads = kernel_threads(size)
        src = split_loop("\n".join(lines) + "\n", threads, unsigned=True)

        def args(ins, outs):
            copy = any(o is not a for o, a in zip(outs, [ins[0], *ins[2:n]]))
            return [*ins[:n], *outs, *(np.asarray(h, np.float64).reshape(1) for h in ins[n:]),
                    copy]
        return Lowering(source=src, threads=threads, args=args, work=size)

    def samples(self, rng):
        n = 7
        arrays = [rng.normal(size=n) for _ in range(self.n_arrays)]
        arrays[self.n_arrays - 1] = np.abs(arrays[self.n_arrays - 1])  # a squared-gradient average
        return [Sample(arrays + [np.array(h) for h in self.sample_hyper])]


@register
class AdamUpdate(_Update):
    """θ' = θ − lr·sqrt(1−β2^t)/(1−β1^t)·m'/(sqrt(v')+ε); m' = β1 m + (1−β1) g;
    v' = β2 v + (1−β2) g²"""

    name = "adam_update"
    n_arrays, n_hyper, n_outputs = 4, 5, 3
    arg_names = ["theta", "g", "m", "v"]
    hyper_names = ("lr", "beta1", "beta2", "eps", "t")
    scalars = (("b1", "beta1"), ("c1", "1 - beta1"), ("b2", "beta2"), ("c2", "1 - beta2"),
               ("step", "lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)"), ("eps", "eps"))
    body = ["gi = g[i]",
            "mi = b1 * m[i] + c1 * gi",
            "vi = b2 * v[i] + c2 * gi * gi",
            "o1[i] = mi",
            "o2[i] = vi",
            "o0[i] = theta[i] - step * mi / (np.sqrt(vi) + eps)"]

    sample_hyper = (0.01, 0.9, 0.999, 1e-8, 3.0)

    def ref(self, theta, g, m, v, lr, beta1, beta2, eps, t):
        m2 = beta1 * m + (1 - beta1) * g
        v2 = beta2 * v + (1 - beta2) * g * g
        step = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        dt = theta.dtype
        return ((theta - step * m2 / (np.sqrt(v2) + eps)).astype(dt), m2.astype(dt),
                v2.astype(dt))


@register
class RmspropUpdate(_Update):
    """v' = ρ v + (1−ρ) g²; θ' = θ − lr·g/(sqrt(v')+ε)"""

    name = "rmsprop_update"
    n_arrays, n_hyper, n_outputs = 3, 3, 2
    arg_names = ["theta", "g", "v"]
    hyper_names = ("lr", "rho", "eps")
    scalars = (("lr", "lr"), ("rho", "rho"), ("c", "1 - rho"), ("eps", "eps"))
    body = ["gi = g[i]",
            "vi = rho * v[i] + c * gi * gi",
            "o1[i] = vi",
            "o0[i] = theta[i] - lr * gi / (np.sqrt(vi) + eps)"]

    sample_hyper = (0.01, 0.9, 1e-8)

    def ref(self, theta, g, v, lr, rho, eps):
        v2 = rho * v + (1 - rho) * g * g
        dt = theta.dtype
        return (theta - lr * g / (np.sqrt(v2) + eps)).astype(dt), v2.astype(dt)


@register
class SgdmUpdate(_Update):
    """vel' = μ·vel − lr·g; θ' = θ + vel'"""

    name = "sgdm_update"
    n_arrays, n_hyper, n_outputs = 3, 2, 2
    arg_names = ["theta", "g", "vel"]
    hyper_names = ("lr", "mu")
    scalars = (("lr", "lr"), ("mu", "mu"))
    body = ["veli = mu * vel[i] - lr * g[i]",
            "o1[i] = veli",
            "o0[i] = theta[i] + veli"]
    sample_hyper = (0.01, 0.9)

    def ref(self, theta, g, vel, lr, mu):
        v2 = mu * vel - lr * g
        dt = theta.dtype
        return (theta + v2).astype(dt), v2.astype(dt)
