"""The GPU path, checked without a GPU: every op of every engine's train step has a GPU kernel in
this TensorFlow build and is not one that op determinism refuses, or leaves nondeterministic, on a
GPU. No GPU is reachable here; this is the strongest check of `make docker-reproduce`'s GPU path
that can run (README, Docker).
"""

import pytest
import tensorflow as tf
from tensorflow.python.framework import kernels

from conftest import raw_spec, typed
from dprepro.training import engines as engine
from dprepro.training.selective import select
from dprepro.spec import ENGINES, POISSON_ENGINES

# TensorFlow ops that, on a GPU with op determinism enabled (TF 2.15), raise UnimplementedError or
# stay nondeterministic. From TensorFlow's determinism RFC (tensorflow/community,
# rfcs/20210119-determinism.md) and the determinism notes of the 2.7-2.9 release notes.
GPU_DETERMINISM_UNSAFE = {
    "DepthwiseConv2dNativeBackpropFilter",     # depthwise conv, gradient w.r.t. the filter
    "Dilation2DBackpropInput", "Dilation2DBackpropFilter",
    "MaxPoolGradWithArgmax",
    "FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3",  # offset, not training
    "ResizeNearestNeighborGrad", "ResizeBilinearGrad",
    "CropAndResizeGradImage", "CropAndResizeGradBoxes",
    "AdjustContrastv2",
    "SparseTensorDenseMatMul",
    "Bincount", "DenseBincount", "SparseBincount", "RaggedBincount",
    "Timestamp",
    "DebugNumericSummary", "DebugNumericSummaryV2",
    "ResourceScatterAdd", "ResourceScatterSub", "ScatterAdd", "ScatterSub",
    "ScatterNdAdd", "ScatterNdSub", "ResourceScatterNdAdd", "ResourceScatterNdSub",
}
# Ops with a kernel for every device (function calls, control flow) are listed as DEFAULT.
GPU_DEVICES = {"GPU", "DEFAULT"}


def train_step_op_types(model, batch_size: int, masked: bool = False, shape=(28, 28, 1), paired: bool = False) -> set:
    """Every op type in the traced train step, including the bodies of the functions it calls
    (`masked`: with the 0/1 mask of Poisson-sampled batches, batch size unknown; `paired`: a training
    batch beside a validation sample, as DPSUR's step takes them)."""
    spec = (tf.TensorSpec([batch_size, *shape], tf.float32), tf.TensorSpec([batch_size, 10], tf.float32))
    if masked:
        spec = (tf.TensorSpec([None, *shape], tf.float32), tf.TensorSpec([None, 10], tf.float32),
                tf.TensorSpec([None], tf.float32))
    if paired:
        spec = (spec, spec)
    graph_def = tf.function(model.train_step).get_concrete_function(spec).graph.as_graph_def()
    functions = {f.signature.name for f in graph_def.library.function}
    ops = {n.op for n in graph_def.node}
    ops |= {n.op for f in graph_def.library.function for n in f.node_def}
    return ops - functions


@pytest.fixture(scope="module")
def op_types():
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["privacy"]["num_microbatches"] = 8
    spec = typed(raw, "gpu-check")
    found = {}
    for name in ENGINES:
        engine.seed_everything(0)
        model = engine.build_model(spec, name)
        model.build((None, 28, 28, 1))
        found[name] = train_step_op_types(model, 8)
    raw["data"]["sampling"] = "poisson"
    for name in POISSON_ENGINES:
        engine.seed_everything(0)
        model = engine.build_model(typed(raw, "gpu-check"), name)
        model.build((None, 28, 28, 1))
        found[f"{name}-poisson"] = train_step_op_types(model, 8, masked=True)
    raw["privacy"]["selective_update"] = {"validation_noise_multiplier": 1.0}     # DPSUR's step
    engine.seed_everything(0)
    spec_dpsur = typed(raw, "gpu-check")
    model = select(engine.build_model(spec_dpsur, "fast"), spec_dpsur.selective)
    model.build((None, 28, 28, 1))
    found["fast-poisson-selective"] = train_step_op_types(model, 8, masked=True, paired=True)
    del raw["privacy"]["selective_update"]
    raw["data"].update(features="scatternet", normalization="group", norm_groups=27)
    raw["model"].update(name="scatternet_cnn", activation="tanh")
    engine.seed_everything(0)
    model = engine.build_model(typed(raw, "gpu-check"), "fast")      # a ScatterNet head, Poisson batches
    model.build((None, 7, 7, 81))
    found["fast-poisson-scatternet_cnn"] = train_step_op_types(model, 8, masked=True, shape=(7, 7, 81))
    return found


ROWS = [*ENGINES, *(f"{name}-poisson" for name in POISSON_ENGINES), "fast-poisson-selective", "fast-poisson-scatternet_cnn"]


@pytest.mark.parametrize("engine_name", ROWS)
def test_every_op_has_a_gpu_kernel(op_types, engine_name):
    ops = op_types[engine_name]
    assert {"MatMul", "Conv2D"} <= ops, "the trace must contain the model's layers"
    missing = sorted(op for op in ops
                     if not {k.device_type for k in kernels.get_registered_kernels_for_op(op).kernel} & GPU_DEVICES)
    assert missing == [], f"{engine_name}: ops without a GPU kernel: {missing}"


@pytest.mark.parametrize("engine_name", ROWS)
def test_no_op_that_determinism_refuses_on_a_gpu(op_types, engine_name):
    assert sorted(op_types[engine_name] & GPU_DETERMINISM_UNSAFE) == []


def test_the_check_can_fail():
    """A depthwise convolution's filter gradient (what fast v2 would have needed for training the
    first Conv2D by that route) is caught."""
    x = tf.TensorSpec([2, 8, 8, 3], tf.float32)

    @tf.function
    def step(a):
        f = tf.ones([3, 3, 3, 1])
        with tf.GradientTape() as tape:
            tape.watch(f)
            y = tf.nn.depthwise_conv2d(a, f, [1, 1, 1, 1], "SAME")
        return tape.gradient(y, f)

    graph_def = step.get_concrete_function(x).graph.as_graph_def()
    ops = {n.op for n in graph_def.node} | {n.op for fn in graph_def.library.function for n in fn.node_def}
    assert "DepthwiseConv2dNativeBackpropFilter" in ops & GPU_DETERMINISM_UNSAFE
