# %9: f32[16,32], %10: bool[16,32]{CB} = fused(%8, %params.b1, %6, body=(('add', (0, 1), ()), ('relabel', (3,), (('fmt', 'CB'),)), ('relu', (4,), ()), ('relabel', (5,), (('fmt', ''),)), ('greater', (4, 2), ())), results=(6, 7), shape=(16, 32), types=(('f32', ''), ('bool', 'CB')))  # vjp(relu)
def kernel(o0, o1, a0, a1, a2):
    s2 = a2[0]
    for i0 in range(o0.shape[0]):
        for i1 in range(o0.shape[1]):
            x0 = a0[i0, i1]
            x1 = a1[i0, i1]
            t0 = (x0 + x1)
            t1 = t0
            t2 = (t1 if t1 > 0 else 0.0)
            t3 = t2
            t4 = (t1 > s2)
            o0[i0, i1] = t3
            o1[i0, i1] = t4
    return 0


# %12: f32[4,32]{CB} = fused(%11, %params.b2, body=(('add', (0, 1), ()), ('relabel', (2,), (('fmt', 'CB'),))), results=(3,), shape=(4, 32), types=(('f32', 'CB'),))  # fullyconnect
def kernel(o0, a0, a1):
    for i0 in range(o0.shape[0]):
        for i1 in range(o0.shape[1]):
            x0 = a0[i0, i1]
            x1 = a1[i0, i1]
            t0 = (x0 + x1)
            t1 = t0
            o0[i0, i1] = t1
    return 0


# %13: f32[4,32]{CB} = softmax(%12)  # softmax
def kernel(out, x):
    for p in prange(x.shape[0]):
        for q in range(x.shape[2]):
            m = -np.inf
            for k in range(x.shape[1]):
                m = max(m, x[p, k, q])
            s = 0.0
            for k in range(x.shape[1]):
                e = math.exp(x[p, k, q] - m)
                out[p, k, q] = e
                s += e
            for k in range(x.shape[1]):
                out[p, k, q] = out[p, k, q] / s
    return 0


# %14: f32[4,32]{CB}, %15: f32[4,32]{CB}, %16: f32[4,32]{CB} = fused(%13, %0, %1, %T, %5, %6, %4, body=(('minimum', (0, 1), ()), ('maximum', (7, 2), ()), ('log', (8,), ()), ('mul', (3, 9), ()), ('equal', (7, 2), ()), ('where', (11, 4, 5), ()), ('greater', (7, 2), ()), ('where', (13, 6, 12), ())), results=(8, 10, 14), shape=(4, 32), types=(('f32', 'CB'), ('f32', 'CB'), ('f32', 'CB')))  # vjp(crossentropy)
def kernel(o0, o1, o2, a0, a1, a2, a3, a4, a5, a6):
    s1 = a1[0]
    s2 = a2[0]
    s4 = a4[0]
    s5 = a5[0]
    s6 = a6[0]
    for i0 in range(o0.shape[0]):
        x0 = a0[i0]
        x3 = a3[i0]
        t0 = min(x0, s1)
        t1 = max(t0, s2)
        t2 = math.log(t1)
        t3 = (x3 * t2)
        t4 = (t0 == s2)
        t5 = (s4 if t4 else s5)
        t6 = (t0 > s2)
        t7 = (s6 if t6 else t5)
        o0[i0] = t1
        o1[i0] = t3
        o2[i0] = t7
    return 0


# %17: f32[] = reduce_sum(%15, axes=(0, 1))  # crossentropy
def kernel(out, x):
    for p in range(x.shape[0]):
        for q in range(x.shape[2]):
            out[p, q] = 0.0
        for k in range(x.shape[1]):
            for q in range(x.shape[2]):
                out[p, q] = out[p, q] + x[p, k, q]
    return 0


# %18: f32[] = fused(%17, %2, body=(('mul', (0, 1), ()),), results=(2,), types=(('f32', ''),))  # crossentropy
def kernel(o0, a0, a1):
    s0 = a0[0]
    s1 = a1[0]
    for i0 in range(o0.shape[0]):
        t0 = (s0 * s1)
        o0[i0] = t0
    return 0


# %20: f32[4,32]{CB} = fused(%19, %T, %14, body=(('mul', (0, 1), ()), ('div', (3, 2), ())), results=(4,), shape=(4, 32), types=(('f32', 'CB'),))  # vjp(crossentropy)
def kernel(o0, a0, a1, a2):
    for i0 in range(o0.shape[0]):
        x0 = a0[i0]
        x1 = a1[i0]
        x2 = a2[i0]
        t0 = (x0 * x1)
        t1 = (t0 / x2)
        o0[i0] = t1
    return 0


# %21: f32[4,32]{CB} = fused(%20, %16, body=(('mul', (0, 1), ()),), results=(2,), shape=(4, 32), types=(('f32', 'CB'),))  # vjp(crossentropy)
def kernel(o0, a0, a1):
    for i0 in range(o0.shape[0]):
        x0 = a0[i0]
        x1 = a1[i0]
        t0 = (x0 * x1)
        o0[i0] = t0
    return 0


# %22: f32[4,32]{CB} = fused(%13, %0, %5, %6, body=(('equal', (0, 1), ()), ('where', (4, 2, 3), ())), results=(5,), shape=(4, 32), types=(('f32', 'CB'),))  # vjp(crossentropy)
def kernel(o0, a0, a1, a2, a3):
    s1 = a1[0]
    s2 = a2[0]
    s3 = a3[0]
    for i0 in range(o0.shape[0]):
        x0 = a0[i0]
        t0 = (x0 == s1)
        t1 = (s2 if t0 else s3)
        o0[i0] = t1
    return 0


# %23: f32[4,32]{CB}, %24: f32[4,32]{CB} = fused(%13, %0, %4, %22, %21, body=(('less', (0, 1), ()), ('where', (5, 2, 3), ()), ('mul', (4, 6), ()), ('mul', (7, 0), ())), results=(7, 8), shape=(4, 32), types=(('f32', 'CB'), ('f32', 'CB')))  # vjp(softmax)
def kernel(o0, o1, a0, a1, a2, a3, a4):
    s1 = a1[0]
    s2 = a2[0]
    for i0 in range(o0.shape[0]):
        x0 = a0[i0]
        x3 = a3[i0]
        x4 = a4[i0]
        t0 = (x0 < s1)
        t1 = (s2 if t0 else x3)
        t2 = (x4 * t1)
        t3 = (t2 * x0)
        o0[i0] = t2
        o1[i0] = t3
    return 0


# %25: f32[1,32]{CB} = reduce_sum(%24, axes=(0,), keepdims=True)  # vjp(softmax)
def kernel(out, x):
    for p in range(x.shape[0]):
        for q in range(x.shape[2]):
            out[p, q] = 0.0
        for k in range(x.shape[1]):
            for q in range(x.shape[2]):
                out[p, q] = out[p, q] + x[p, k, q]
    return 0


# %26: f32[4,32] = fused(%23, %25, %13, body=(('sub', (0, 1), ()), ('mul', (2, 3), ()), ('relabel', (4,), (('fmt', ''),))), results=(5,), shape=(4, 32), types=(('f32', ''),))  # vjp(fullyconnect)
def kernel(o0, a0, a1, a2):
    for i0 in range(o0.shape[0]):
        for i1 in range(o0.shape[1]):
            x0 = a0[i0, i1]
            x1 = a1[i0, i1]
            x2 = a2[i0, i1]
            t0 = (x0 - x1)
            t1 = (x2 * t0)
            t2 = t1
            o0[i0, i1] = t2
    return 0


# %27: f32[4,1] = sum_to(%26, shape=(4, 1))  # vjp(fullyconnect)
def kernel(out, x):
    for p in range(x.shape[0]):
        for q in range(x.shape[2]):
            out[p, q] = 0.0
        for k in range(x.shape[1]):
            for q in range(x.shape[2]):
                out[p, q] = out[p, q] + x[p, k, q]
    return 0


# %33: f32[16,32] = fused(%10, %32, %6, body=(('where', (0, 1, 2), ()), ('relabel', (3,), (('fmt', ''),))), results=(4,), shape=(16, 32), types=(('f32', ''),))  # vjp(fullyconnect)
def kernel(o0, a0, a1, a2):
    s2 = a2[0]
    for i0 in range(o0.shape[0]):
        x0 = a0[i0]
        x1 = a1[i0]
        t0 = (x1 if x0 else s2)
        t1 = t0
        o0[i0] = t1
    return 0


# %34: f32[16,1] = sum_to(%33, shape=(16, 1))  # vjp(fullyconnect)
def kernel(out, x):
    for p in range(x.shape[0]):
        for q in range(x.shape[2]):
            out[p, q] = 0.0
        for k in range(x.shape[1]):
            for q in range(x.shape[2]):
                out[p, q] = out[p, q] + x[p, k, q]
    return 0

