"""trainnet and the gradient transforms of the compiled step: MATLAB's training loop, checked
on tiny problems (NumPy formulas, schedules, batching, validation, plots, checkpoints,
interrupts, non-finite values) and on scikit-learn's digits."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lgc
from lgc import (
    LgcError,
    batchNormalizationLayer,
    convolution2dLayer,
    dlnetwork,
    featureInputLayer,
    fullyConnectedLayer,
    imageInputLayer,
    maxPooling2dLayer,
    onehotdecode,
    predict,
    reluLayer,
    softmaxLayer,
    trainingOptions,
    trainnet,
)
from lgc.train import CheckpointError, checkpoint_files, latest_checkpoint, load_checkpoint
from lgc.train.trainnet import learn_rate_at

# The problem the checkpoint tests train, also run in a subprocess: keep it self-contained.
PROBLEM = textwrap.dedent("""
    import numpy as np
    import lgc
    from lgc import (batchNormalizationLayer, dlnetwork, featureInputLayer,
                     fullyConnectedLayer, reluLayer, softmaxLayer, trainingOptions)

    def make_problem(**options):
        rng = np.random.default_rng(7)
        X = rng.normal(size=(6, 96)).astype(np.float32)
        labels = (X[0] + X[1] > 0).astype(int) + (X[2] > 1)
        lgc.rng(3)
        net = dlnetwork([featureInputLayer(6), fullyConnectedLayer(16),
                         batchNormalizationLayer(), reluLayer(), fullyConnectedLayer(3),
                         softmaxLayer()])
        opts = dict(MaxEpochs=6, MiniBatchSize=16, Shuffle="every-epoch", Verbose=False,
                    InitialLearnRate=0.01)
        opts.update(options)
        return X, labels, net, trainingOptions("adam", **opts)
""")
_ns: dict = {}
exec(PROBLEM, _ns)
make_problem = _ns["make_problem"]


def _params(net):
    return [np.asarray(v).copy() for v in net.Learnables.Value]


def _mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    p = {"W": lgc.dlarray(rng.normal(size=(3, 4)).astype(np.float64)),
         "b": lgc.dlarray(rng.normal(size=(3, 1)).astype(np.float64))}
    X = lgc.dlarray(rng.normal(size=(4, 5)) * 3, "CB")
    return p, X


def _loss(p, X):
    return lgc.sum(lgc.fullyconnect(X, p["W"], p["b"]) ** 2)


def _raw_grads(p, X):
    g = lgc.dlfeval(lambda p, X: lgc.dlgradient(_loss(p, X), p), p, X)
    return {k: np.asarray(v) for k, v in g.items()}


# --- gradient transforms inside the compiled step ------------------------------------------------


def _one_sgd_step(p, X, **transforms):
    """θ1 − θ0 = −lr·g' for sgdm with momentum 0: recovers the transformed gradient g'."""
    step = lgc.compile_train_step(_loss, p, "sgdm", learnRate=1.0, momentum=0.0, **transforms)
    step(X)
    return {k: np.asarray(p[k]) - np.asarray(step.params[k]) for k in p}


def test_l2_regularization_adds_lambda_w():
    p, X = _mlp_params()
    g = _raw_grads(p, X)
    got = _one_sgd_step(p, X, l2_regularization=0.25)
    for k in p:
        np.testing.assert_allclose(got[k], g[k] + 0.25 * np.asarray(p[k]), rtol=1e-12)


@pytest.mark.parametrize("method", ["l2norm", "global-l2norm", "absolute-value"])
def test_gradient_threshold_matches_numpy(method):
    p, X = _mlp_params()
    g = _raw_grads(p, X)
    thr = 0.5 * min(np.linalg.norm(v) for v in g.values())  # every method clips something
    if method == "l2norm":
        want = {k: v * min(1.0, thr / np.linalg.norm(v)) for k, v in g.items()}
    elif method == "global-l2norm":
        total = np.sqrt(sum(np.sum(v * v) for v in g.values()))
        want = {k: v * min(1.0, thr / total) for k, v in g.items()}
    else:
        thr = float(np.median(np.abs(g["W"])))
        want = {k: np.clip(v, -thr, thr) for k, v in g.items()}
    got = _one_sgd_step(p, X, gradient_threshold=thr, gradient_threshold_method=method)
    for k in p:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)
        assert not np.allclose(want[k], g[k]) or method == "absolute-value"


def test_l2_then_clip_and_layer_l2_factors():
    lgc.rng(0)
    net = dlnetwork([featureInputLayer(3), fullyConnectedLayer(2, WeightL2Factor=2)])
    X = lgc.dlarray(np.random.default_rng(1).normal(size=(3, 4)), "CB")

    def loss(net, X):
        Y, state = lgc.forward(net, X)
        return lgc.sum(Y * Y), state

    g = lgc.dlfeval(lambda n, X: lgc.dlgradient(loss(n, X)[0], n.Learnables), net, X)
    W, b = (np.asarray(v) for v in net.Learnables.Value)
    gW, gb = (np.asarray(v) for v in g.Value)
    step = lgc.compile_train_step(loss, net, "sgdm", learnRate=1.0, momentum=0.0,
                                  l2_regularization=0.1, gradient_threshold=1e9)
    step(X)
    W1, b1 = (np.asarray(v) for v in step.net.Learnables.Value)
    # MATLAB: WeightL2Factor multiplies λ; BiasL2Factor defaults to 0
    np.testing.assert_allclose(W - W1, gW + 0.1 * 2 * W, rtol=1e-5)
    np.testing.assert_allclose(b - b1, gb, rtol=1e-5)


def test_bad_transform_options():
    p, _ = _mlp_params()
    for kw, match in [({"l2_regularization": -1}, "l2_regularization"),
                      ({"gradient_threshold": 0}, "gradient_threshold"),
                      ({"gradient_threshold_method": "l1"}, "gradient_threshold_method")]:
        with pytest.raises(LgcError, match=match):
            lgc.compile_train_step(_loss, p, "sgdm", **kw)


# --- the training loop --------------------------------------------------------------------------


def test_piecewise_schedule_and_dropped_partial_batch():
    X, labels, net, opts = make_problem(MaxEpochs=5, MiniBatchSize=40, Shuffle="once",
                                        LearnRateSchedule="piecewise", LearnRateDropFactor=0.5,
                                        LearnRateDropPeriod=2, InitialLearnRate=0.1)
    _, info = trainnet(X, labels, net, "crossentropy", opts)
    h = info.History
    assert len(h) == 5 * (96 // 40)  # 96 observations, batches of 40: 2 per epoch, 16 unused
    np.testing.assert_array_equal(h.Iteration, np.arange(1, 11))
    np.testing.assert_array_equal(h.Epoch, np.repeat(np.arange(1, 6), 2))
    np.testing.assert_allclose(h.LearnRate, np.repeat([0.1, 0.1, 0.05, 0.05, 0.025], 2))
    assert learn_rate_at(opts, 7) == pytest.approx(0.1 * 0.5 ** 3)
    assert np.all(np.isnan(h.ValidationLoss)) and info.StopReason == "max-epochs"
    assert np.all((h.TrainingAccuracy >= 0) & (h.TrainingAccuracy <= 100))


@pytest.mark.parametrize("solver, opts", [
    ("sgdm", {"Momentum": 0.8, "InitialLearnRate": 0.05}),
    ("adam", {"GradientDecayFactor": 0.8, "SquaredGradientDecayFactor": 0.99, "Epsilon": 1e-6}),
    ("rmsprop", {"SquaredGradientDecayFactor": 0.8, "Epsilon": 1e-6})])
def test_trainnet_equals_the_compiled_step_loop(solver, opts):
    X, labels, net, _ = make_problem()
    o = trainingOptions(solver, MaxEpochs=2, MiniBatchSize=32, Shuffle="never",
                        L2Regularization=0.0, Verbose=False, **opts)
    trained, _ = trainnet(X, labels, net, "crossentropy", o)

    def loss(net, X, T):
        Y, state = lgc.forward(net, X)
        return lgc.crossentropy(Y, T), state

    names = {"Momentum": "momentum", "GradientDecayFactor": "gradDecay",
             "SquaredGradientDecayFactor": "sqGradDecay", "Epsilon": "epsilon",
             "InitialLearnRate": "learnRate"}
    step = lgc.compile_train_step(loss, net, solver, learnRate=o.InitialLearnRate,
                                  **{names[k]: v for k, v in opts.items()
                                     if k != "InitialLearnRate"})
    T = lgc.onehotencode(labels, 0)
    for _ in range(2):
        for j in range(3):
            sl = slice(32 * j, 32 * (j + 1))
            step(lgc.dlarray(X[:, sl], "CB"), lgc.dlarray(T[:, sl], "CB"))
    for a, b in zip(_params(trained), _params(step.net)):
        np.testing.assert_array_equal(a, b)


def test_too_large_mini_batch_is_an_error():
    X, labels, net, opts = make_problem(MiniBatchSize=200)
    with pytest.raises(LgcError, match="MiniBatchSize 200 is larger than the number of "
                                       "observations 96"):
        trainnet(X, labels, net, "crossentropy", opts)


def test_validation_history_and_final_values():
    X, labels, net, opts = make_problem(MaxEpochs=2, ValidationFrequency=4,
                                        ValidationData=(X_val := np.ones((6, 10), np.float32),
                                                        np.arange(10) % 3))
    trained, info = trainnet(X, labels, net, "crossentropy", opts)
    h = info.History
    has_val = np.flatnonzero(np.isfinite(h.ValidationLoss)) + 1
    np.testing.assert_array_equal(has_val, [1, 4, 8, 12])  # first, every 4th, the last
    Y = np.asarray(predict(trained, lgc.dlarray(X_val, "CB")))
    T = lgc.onehotencode(np.arange(10) % 3, 0, ClassNames=range(3))
    np.testing.assert_allclose(info.FinalValidationLoss,
                               -np.sum(T * np.log(np.clip(Y, 1e-7, 1))) / 10, rtol=1e-4)
    acc = 100 * np.mean(Y.argmax(0) == np.arange(10) % 3)
    assert info.FinalValidationAccuracy == pytest.approx(acc)
    assert h.ValidationAccuracy[-1] == pytest.approx(acc)
    np.testing.assert_array_equal(info.ClassNames, [0, 1, 2])


def test_digits_cnn_reaches_accuracy_fast():
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    images = (d.images[order] / 16.0).astype(np.float32).transpose(1, 2, 0)[:, :, None, :]
    labels = d.target[order]
    Xtr, ytr, Xte, yte = images[..., :1400], labels[:1400], images[..., 1400:], labels[1400:]
    lgc.rng(0)
    net = dlnetwork([imageInputLayer([8, 8, 1]), convolution2dLayer(3, 8, Padding="same"),
                     batchNormalizationLayer(), reluLayer(), maxPooling2dLayer(2, Stride=2),
                     fullyConnectedLayer(10), softmaxLayer()])
    opts = trainingOptions("adam", InitialLearnRate=0.01, MaxEpochs=5, MiniBatchSize=64,
                           Verbose=False)
    t0 = time.perf_counter()
    trained, info = trainnet(Xtr, ytr, net, "crossentropy", opts)
    seconds = time.perf_counter() - t0
    mean = trained.Layers[0].Mean  # MATLAB: zerocenter statistics from the training data
    np.testing.assert_allclose(mean, Xtr.mean(), rtol=1e-5)
    acc = np.mean(onehotdecode(predict(trained, lgc.dlarray(Xte, "SSCB")), np.arange(10), 0)
                  == yte)
    print(f"digits: test accuracy {acc:.1%} in {seconds:.2f} s ({info.Iterations} iterations)")
    assert acc >= 0.95
    assert seconds < 30


def test_verbose_table_and_progress_bar(capsys):
    X, labels, net, opts = make_problem(MaxEpochs=2, Verbose=True, VerboseFrequency=5,
                                        ValidationData=(np.ones((6, 4), np.float32),
                                                        np.arange(4) % 3))
    trainnet(X, labels, net, "crossentropy", opts)
    out, err = capsys.readouterr()
    assert "|  Epoch  |  Iteration  |  Time Elapsed  |  Mini-batch  |  Validation  |" in out
    rows = [line for line in out.splitlines() if line.startswith("|") and "%" in line]
    assert [int(r.split("|")[2]) for r in rows] == [1, 5, 10, 12]
    assert "Training finished: Max epochs completed." in out
    assert "12/12" in err  # the tqdm bar


def test_training_progress_png_is_written_and_refreshed(tmp_path):
    seen = []
    path = tmp_path / "progress.png"

    def watch(info):
        if path.exists():
            seen.append(hashlib.sha256(path.read_bytes()).hexdigest())

    X, labels, net, opts = make_problem(MaxEpochs=3, Plots="training-progress",
                                        PlotPath=str(path), OutputFcn=watch)
    _, info = trainnet(X, labels, net, "crossentropy", opts)
    assert info.PlotPath == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(set(seen)) >= 2  # refreshed at least at each epoch end during training
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_default_plot_path_is_in_the_checkpoint_folder(tmp_path):
    X, labels, net, opts = make_problem(MaxEpochs=1, Plots="training-progress",
                                        CheckpointPath=str(tmp_path))
    _, info = trainnet(X, labels, net, "crossentropy", opts)
    assert info.PlotPath == str(tmp_path / "training-progress.png")
    assert os.path.getsize(info.PlotPath) > 1000


# --- interrupts and non-finite values ----------------------------------------------------------


def test_keyboard_interrupt_from_output_fcn_stops_cleanly():
    snapshots = {}

    def stop_at_3(info):
        if info.State == "iteration":
            snapshots[info.Iteration] = None
            if info.Iteration == 3:
                raise KeyboardInterrupt

    X, labels, net, opts = make_problem(OutputFcn=stop_at_3)
    trained, info = trainnet(X, labels, net, "crossentropy", opts)
    assert info.StopReason == "interrupted" and len(info.History) == 3
    assert info.Iterations == 3
    X2, labels2, net2, opts2 = make_problem(MaxEpochs=1, OutputFcn=lambda i: i.Iteration == 3)
    ref, info2 = trainnet(X2, labels2, net2, "crossentropy", opts2)
    assert info2.StopReason == "output-function"
    for a, b in zip(_params(trained), _params(ref)):
        np.testing.assert_array_equal(a, b)


def test_sigint_stops_after_the_current_iteration():
    def ctrl_c(info):
        if info.Iteration == 4 and info.State == "iteration":
            os.kill(os.getpid(), signal.SIGINT)

    X, labels, net, opts = make_problem(OutputFcn=ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    trained, info = trainnet(X, labels, net, "crossentropy", opts)
    assert info.StopReason == "interrupted" and len(info.History) == 4
    assert signal.getsignal(signal.SIGINT) is before
    assert all(np.all(np.isfinite(v)) for v in _params(trained))


def test_non_finite_loss_names_the_iteration_and_keeps_parameters():
    X, labels, net, opts = make_problem(Shuffle="never", MaxEpochs=1)
    T = lgc.onehotencode(labels, 0)
    T[0, 2 * 16 + 5] = np.nan  # a target in the third mini-batch
    with pytest.raises(LgcError, match=r"training loss is NaN or Inf at iteration 3 \(epoch 1"
                       ) as e:
        trainnet(X, T, net, "mse", opts)
    X2, labels2, net2, opts2 = make_problem(Shuffle="never", MaxEpochs=1,
                                            OutputFcn=lambda i: i.Iteration == 2)
    ref, _ = trainnet(X2, T, net2, "mse", opts2)
    for a, b in zip(_params(e.value.net), _params(ref)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_gradient_names_layer_and_iteration():
    X, labels, net, opts = make_problem(MaxEpochs=1)
    before = _params(net)

    def loss(Y, T):  # finite value (sqrt(0) = 0) with a NaN gradient (inf · 0)
        return lgc.crossentropy(Y, T) + lgc.sum(lgc.sqrt(lgc.abs(Y - Y)))

    with pytest.raises(LgcError, match=r"gradient of layer 'fc_1' \(parameter Weights\) is NaN "
                                       r"or Inf at iteration 1") as e:
        trainnet(X, labels, net, loss, opts)
    for a, b in zip(_params(e.value.net), before):
        np.testing.assert_array_equal(a, b)


# --- checkpoints ---------------------------------------------------------------------------------


def test_checkpoint_each_epoch_and_resume_matches(tmp_path):
    X, labels, net, opts = make_problem(MaxEpochs=4, CheckpointPath=str(tmp_path))
    full, info = trainnet(X, labels, net, "crossentropy", opts)
    files = checkpoint_files(str(tmp_path))
    assert [os.path.basename(f) for f in files] == [
        f"net_checkpoint__{6 * e}__epoch{e}.lgcckpt" for e in range(1, 5)]
    assert info.CheckpointFiles == files
    ck = load_checkpoint(files[1])
    assert (ck.iteration, ck.epoch) == (12, 2) and ck.net is not None
    X, labels, net, opts = make_problem(MaxEpochs=4, ResumeFrom=files[1])
    resumed, info2 = trainnet(X, labels, net, "crossentropy", opts)
    assert len(info2.History) == 24
    np.testing.assert_array_equal(info2.History.TrainingLoss, info.History.TrainingLoss)
    for a, b in zip(_params(resumed), _params(full)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(resumed.State.Value, full.State.Value):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_with_other_options_is_refused(tmp_path):
    X, labels, net, opts = make_problem(MaxEpochs=1, CheckpointPath=str(tmp_path))
    trainnet(X, labels, net, "crossentropy", opts)
    X, labels, net, opts = make_problem(MaxEpochs=2, InitialLearnRate=0.5,
                                        ResumeFrom=latest_checkpoint(str(tmp_path)))
    with pytest.raises(CheckpointError, match="other options or data"):
        trainnet(X, labels, net, "crossentropy", opts)


SUBPROCESS = PROBLEM + textwrap.dedent("""
    import sys, time
    from lgc import trainnet
    X, labels, net, opts = make_problem(CheckpointPath=sys.argv[1],
                                        OutputFcn=lambda info: time.sleep(0.05))
    trainnet(X, labels, net, "crossentropy", opts)
    print("finished")
""")


def test_sigkill_mid_run_then_resume_reaches_the_same_parameters(tmp_path):
    env = {**os.environ, "LGC_BACKEND": "reference"}
    proc = subprocess.Popen([sys.executable, "-c", SUBPROCESS, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while len(checkpoint_files(str(tmp_path))) < 2:
            for f in checkpoint_files(str(tmp_path)):
                load_checkpoint(f)  # loadable whenever it is visible: never partial
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoints from the subprocess"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
    assert b"finished" not in out  # killed mid-run
    files = checkpoint_files(str(tmp_path))
    assert 2 <= len(files) < 6
    for f in files:
        load_checkpoint(f)
    X, labels, net, opts = make_problem(ResumeFrom=files[-1])
    resumed, _ = trainnet(X, labels, net, "crossentropy", opts)
    X, labels, net, opts = make_problem()
    full, _ = trainnet(X, labels, net, "crossentropy", opts)
    for a, b in zip(_params(resumed), _params(full)):
        np.testing.assert_array_equal(a, b)


# --- the compiled backend ----------------------------------------------------------------------


def test_trainnet_on_numba_matches_reference():
    results = []
    old = lgc.get_backend()
    try:
        for backend in ("reference", "numba"):
            lgc.set_backend(backend)
            X, labels, _, opts = make_problem(MaxEpochs=2, GradientThreshold=1.0)
            lgc.rng(5)
            net = dlnetwork([featureInputLayer(6), fullyConnectedLayer(16), reluLayer(),
                             fullyConnectedLayer(3), softmaxLayer()])
            results.append(trainnet(X, labels, net, "crossentropy", opts))
    finally:
        lgc.set_backend(old)
    (ref, ref_info), (nb, nb_info) = results
    np.testing.assert_allclose(nb_info.History.TrainingLoss, ref_info.History.TrainingLoss,
                               rtol=1e-4)
    for a, b in zip(_params(nb), _params(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
