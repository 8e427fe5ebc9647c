"""Tests of the model registry: shapes, parameter counts, homogeneity, dtypes, parameterization."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from l2reg import models
from l2reg.models import layers
from l2reg.models.wide_resnet import WideBlock

# The "rbg" generator compiles far faster on CPU than the default threefry; the properties
# tested hold for any initialization.
KEY = jax.random.key(0, impl="rbg")


def _normal(shape):
    return jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)


def _conv(x, kernel, strides=1):
    """Convolution of NHWC images with an HWIO kernel of odd size k, padded by (k − 1)/2 on each
    side, written out independently of Conv."""
    pad = kernel.shape[0] // 2
    return lax.conv_general_dilated(
        x,
        kernel,
        (strides, strides),
        ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def _init_apply(model, x):
    """Variables and float32 logits of `model` at initialization.

    Run op by op rather than jitted: on CPU, compiling each small model costs more than
    running it, and eager ops of equal shapes are compiled once for all tests.
    """
    variables = model.init(KEY, x, train=False)
    return variables, model.apply(variables, x, train=False)


def _jit_intermediates(model, variables, x, **apply_options):
    """Mutated collections of `model.apply` with every submodule's output under 'intermediates'.

    Compiled as one program: for shapes used by a single test that is faster than op by op.
    """
    apply = functools.partial(model.apply, capture_intermediates=True, **apply_options)
    return jax.jit(apply)(variables, x)[1]


def _num_params(model, input_shape) -> int:
    variables = jax.eval_shape(lambda: model.init(KEY, jnp.zeros(input_shape), train=False))
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize(
    ("name", "options", "input_shape"),
    [
        ("mlp", {}, (3, 8, 8, 1)),
        ("mlp", {"widths": (16,), "normalization": "layer"}, (3, 40)),
        ("mlp", {"widths": (16, 16), "normalization": "batch"}, (3, 40)),
        ("cnn", {"channels": (4, 8)}, (3, 8, 8, 1)),
        ("cnn", {"channels": (4, 8, 8, 8)}, (3, 40)),
        ("wrn10_1", {}, (3, 8, 8, 3)),
        ("wrn10_1", {"normalization": None, "use_bias": False}, (3, 8, 8, 3)),
        ("resnet18", {}, (2, 32, 32, 3)),
    ],
)
def test_logits_shape_and_dtype(name, options, input_shape):
    model = models.create(name, num_classes=7, **options)
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(KEY, x, train=False), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (input_shape[0], 7)
    assert logits.dtype == jnp.float32


@pytest.mark.parametrize(
    ("name", "num_classes", "input_shape", "expected"),
    [
        # Published sizes: WRN-28-10 36.5M (Zagoruyko & Komodakis), ResNet-18/50 11.7M/25.6M.
        ("wrn28_10", 10, (1, 32, 32, 3), 36.5e6),
        ("resnet18", 1000, (1, 224, 224, 3), 11.7e6),
        ("resnet50", 1000, (1, 224, 224, 3), 25.6e6),
    ],
)
def test_parameter_count(name, num_classes, input_shape, expected):
    count = _num_params(models.create(name, num_classes=num_classes), input_shape)
    assert abs(count - expected) < 0.05e6, count


def test_wrn_width_and_depth_follow_the_name():
    # Each 3×3 conv of width w in WRN-d-k scales as k², so doubling k roughly quadruples it.
    small = _num_params(models.create("wrn16_4", num_classes=10), (1, 32, 32, 3))
    wide = _num_params(models.create("wrn16_8", num_classes=10), (1, 32, 32, 3))
    deep = _num_params(models.create("wrn22_4", num_classes=10), (1, 32, 32, 3))
    assert 3.8 < wide / small < 4.1
    assert deep > small * 1.3


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize(
    ("name", "options", "input_shape", "degree"),
    [
        ("mlp", {"widths": (32,)}, (4, 8, 8, 1), 2),
        ("mlp", {"widths": (32, 32, 32)}, (4, 40), 4),
        ("cnn", {"channels": (4, 8)}, (4, 8, 8, 1), 3),
    ],
)
def test_bias_free_relu_networks_are_homogeneous(
    name, options, input_shape, degree, parameterization
):
    model = models.create(
        name, num_classes=5, use_bias=False, parameterization=parameterization, **options
    )
    x = _normal(input_shape)
    variables, logits = _init_apply(model, x)
    scale = 1.7
    scaled = jax.tree.map(lambda p: scale * p, variables)
    np.testing.assert_allclose(
        model.apply(scaled, x, train=False), scale**degree * logits, rtol=1e-4, atol=1e-5
    )


def test_biases_break_homogeneity():
    # The same check fails once biases are on and nonzero: the test above can fail.
    model = models.create("mlp", num_classes=5, widths=(32,))
    x = _normal((4, 40))
    variables, _ = _init_apply(model, x)
    variables = jax.tree.map(lambda p: p + 0.1, variables)
    logits = model.apply(variables, x, train=False)
    scaled = jax.tree.map(lambda p: 1.7 * p, variables)
    assert not np.allclose(model.apply(scaled, x, train=False), 1.7**2 * logits, rtol=1e-2)


@pytest.mark.parametrize(
    ("name", "options", "input_shape"),
    [
        ("mlp", {"widths": (64, 64)}, (4, 40)),
        ("cnn", {"channels": (8, 16)}, (4, 8, 8, 3)),
        ("wrn10_1", {}, (4, 8, 8, 3)),
    ],
)
def test_ntk_and_standard_parameterization_agree_at_initialization(name, options, input_shape):
    x = _normal(input_shape)
    ntk, standard = (
        models.create(name, num_classes=10, parameterization=p, **options)
        for p in ("ntk", "standard")
    )
    ntk_variables, ntk_logits = _init_apply(ntk, x)
    standard_variables, standard_logits = _init_apply(standard, x)
    np.testing.assert_allclose(ntk_logits, standard_logits, rtol=1e-4, atol=1e-5)
    # Same function, different parameters: NTK kernels are N(0, 1), standard N(0, σ²/fan_in).
    ntk_kernel = ntk_variables["params"]["Dense_0"]["kernel"]
    standard_kernel = standard_variables["params"]["Dense_0"]["kernel"]
    assert 0.8 < float(jnp.std(ntk_kernel)) < 1.2
    np.testing.assert_allclose(
        standard_kernel, ntk_kernel * standard_kernel.std() / ntk_kernel.std(), rtol=1e-4
    )


def test_ntk_gradients_scale_differently():
    # The parameterizations differ in training dynamics: the NTK first-layer gradient is
    # σ/√fan_in times the standard one at the same function.
    x = _normal((4, 40))
    grads = {}
    for parameterization in ("ntk", "standard"):
        model = models.create("mlp", num_classes=3, widths=(64,), parameterization=parameterization)
        variables = model.init(KEY, x, train=False)
        loss = lambda v, model=model: jnp.sum(model.apply(v, x, train=False) ** 2)
        grads[parameterization] = jax.grad(loss)(variables)["params"]["Dense_0"]["kernel"]
    np.testing.assert_allclose(
        grads["ntk"], grads["standard"] * np.sqrt(2.0) / np.sqrt(40), rtol=1e-4, atol=1e-7
    )


@pytest.mark.parametrize(
    ("name", "options", "input_shape"),
    [
        ("mlp", {"widths": (128, 128)}, (8, 40)),
        ("wrn10_1", {}, (4, 8, 8, 3)),
    ],
)
def test_bfloat16_forward_is_close_to_float32(name, options, input_shape):
    x = _normal(input_shape)
    fp32 = models.create(name, num_classes=10, **options)
    bf16 = models.create(name, num_classes=10, dtype="bfloat16", **options)
    variables, reference = _init_apply(fp32, x)
    bf16_variables = bf16.init(KEY, x, train=False)
    # Parameters (and batch statistics) stay float32 under a bfloat16 compute dtype.
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf16_variables))
    assert jax.tree.structure(bf16_variables) == jax.tree.structure(variables)
    logits, state = bf16.apply(bf16_variables, x, train=False, capture_intermediates=True)
    assert logits.dtype == jnp.float32
    # Every layer, hidden and readout, really runs in bfloat16; only the logits are cast back.
    layer_outputs = {k: v for k, v in state["intermediates"].items() if k != "__call__"}
    assert layer_outputs
    assert all(out.dtype == jnp.bfloat16 for out in jax.tree.leaves(layer_outputs))
    relative_error = jnp.linalg.norm(logits - reference) / jnp.linalg.norm(reference)
    assert relative_error < 0.03, relative_error


@pytest.mark.parametrize(
    ("layer", "input_shape", "fan_in"),
    [
        # fan_out (taps × features) is at least 4× the fan_in: far beyond the sampling error.
        (layers.Conv(256, kernel_size=3), (1, 8, 8, 64), 3 * 3 * 64),
        (layers.Conv(512, kernel_size=5), (1, 16, 32), 5 * 32),
        (layers.Dense(1024), (1, 256), 256),
    ],
)
def test_standard_kernels_are_he_initialized_from_the_fan_in(layer, input_shape, fan_in):
    # W ~ N(0, 2/fan_in), fan_in = window taps × input channels; ≥ 80k samples put the
    # empirical std within 0.3% (one standard error) of it.
    kernel = jax.jit(layer.init)(KEY, jnp.zeros(input_shape))["params"]["kernel"]
    assert kernel.size >= 80_000
    np.testing.assert_allclose(float(jnp.std(kernel)), np.sqrt(2.0 / fan_in), rtol=0.02)
    assert abs(float(jnp.mean(kernel))) < 0.02 * np.sqrt(2.0 / fan_in)


@pytest.mark.parametrize("size", [6, 7])
@pytest.mark.parametrize(("kernel_size", "strides"), [(3, 1), (3, 2), (1, 2), (7, 2)])
def test_conv_pads_both_sides_alike_to_the_size_of_same_padding(size, kernel_size, strides):
    x = _normal((2, size, size, 3))
    layer = layers.Conv(4, kernel_size=kernel_size, strides=strides, use_bias=False)
    params = layer.init(KEY, x)["params"]
    y = layer.apply({"params": params}, x)
    same = lax.conv_general_dilated(
        x, params["kernel"], (strides, strides), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    assert y.shape == same.shape
    np.testing.assert_allclose(y, _conv(x, params["kernel"], strides), rtol=1e-6, atol=1e-6)
    # Stride 1 pads (k − 1)/2 on each side with 'SAME' too; a stride of 2 on an even size is
    # where the two differ ('SAME' pads that input on the far side only).
    if strides == 1 or (size % 2 == 1 and kernel_size > 1):
        np.testing.assert_allclose(y, same, rtol=1e-6, atol=1e-6)
    elif kernel_size > 1:
        assert not np.allclose(y, same, atol=1e-3)


def test_conv_rejects_an_even_kernel_size():
    with pytest.raises(ValueError, match="Conv kernel_size=2 must be odd"):
        layers.Conv(4, kernel_size=2).init(KEY, jnp.ones((1, 4, 4, 1)))


def test_layer_norm_normalizes_each_pixel_over_the_features():
    # Over the last axis only, separately for each example and pixel (the MLP's Dense outputs
    # are the case without pixels), then the learned gain and shift.
    model = models.create("cnn", num_classes=3, channels=(8,), normalization="layer")
    x = 3.0 * _normal((2, 4, 4, 3)) + 1.0
    variables = jax.jit(functools.partial(model.init, train=False))(KEY, x)
    norm_params = variables["params"]["LayerNorm_0"]
    assert set(norm_params) == {"scale", "bias"}
    features = norm_params["scale"].shape[0]
    gain, shift = jnp.linspace(0.5, 2.0, features), jnp.linspace(-1.0, 1.0, features)
    variables["params"]["LayerNorm_0"] = {"scale": gain, "bias": shift}
    intermediates = _jit_intermediates(model, variables, x, train=False)["intermediates"]
    inputs = intermediates["Conv_0"]["__call__"][0]
    outputs = intermediates["LayerNorm_0"]["__call__"][0]
    normalized = (inputs - inputs.mean(-1, keepdims=True)) / jnp.sqrt(
        inputs.var(-1, keepdims=True) + 1e-6
    )
    np.testing.assert_allclose(outputs, gain * normalized + shift, rtol=1e-4, atol=1e-4)


def _block_shapes(model, input_shape, prefix):
    """Shapes of all intermediates, and (H, W, C) of the outputs of prefix_0, prefix_1, ...

    Traced, not run: shapes only.
    """

    def intermediates(x):
        variables = model.init(KEY, x, train=False)
        return model.apply(variables, x, train=False, capture_intermediates=True)[1]

    shapes = jax.eval_shape(intermediates, jax.ShapeDtypeStruct(input_shape, jnp.float32))
    shapes = shapes["intermediates"]
    count = sum(key.startswith(f"{prefix}_") for key in shapes)
    return shapes, [shapes[f"{prefix}_{i}"]["__call__"][0].shape[1:] for i in range(count)]


def test_wrn28_10_groups_run_at_32_16_and_8_pixels():
    # Strides 1, 2, 2 in the first block of each group only; widths 16·k, 32·k, 64·k.
    _, shapes = _block_shapes(
        models.create("wrn28_10", num_classes=10), (1, 32, 32, 3), "WideBlock"
    )
    assert shapes == [(32, 32, 160)] * 4 + [(16, 16, 320)] * 4 + [(8, 8, 640)] * 4


@pytest.mark.parametrize(
    ("name", "block", "blocks_per_stage", "expansion"),
    [("resnet18", "BasicBlock", (2, 2, 2, 2), 1), ("resnet50", "BottleneckBlock", (3, 4, 6, 3), 4)],
)
def test_resnet_stages_halve_the_resolution(name, block, blocks_per_stage, expansion):
    # 64×64 input: the stride-2 stem gives 32, the max pool 16, then 16, 8, 4, 2 per stage.
    intermediates, shapes = _block_shapes(
        models.create(name, num_classes=10), (1, 64, 64, 3), block
    )
    assert intermediates["Conv_0"]["__call__"][0].shape[1:] == (32, 32, 64)
    expected = []
    for stage, count in enumerate(blocks_per_stage):
        expected += [(16 // 2**stage, 16 // 2**stage, 64 * 2**stage * expansion)] * count
    assert shapes == expected
    if block == "BottleneckBlock":
        # v1.5: the first block of a stage strides in its 3×3 conv, not in the leading 1×1.
        first = intermediates[f"{block}_{blocks_per_stage[0]}"]
        assert first["Conv_0"]["__call__"][0].shape[1:3] == (16, 16)
        assert first["Conv_1"]["__call__"][0].shape[1:3] == (8, 8)


@pytest.mark.parametrize(("features", "strides"), [(4, 1), (8, 2)])
def test_wide_block_matches_a_hand_built_pre_activation_block(features, strides):
    # Without normalization the pre-activation is relu(x). It feeds the 3×3 convs and, where
    # the shape changes, the 1×1 projection shortcut; an identity shortcut carries x itself.
    conv = functools.partial(layers.Conv, use_bias=False)
    no_norm = functools.partial(
        layers.normalization, None, train=False, use_bias=False, axis_name=None, dtype=jnp.float32
    )
    block = WideBlock(features, strides, conv, no_norm)
    x = _normal((2, 6, 6, 4))
    params = jax.jit(block.init)(KEY, x)["params"]
    # Submodules are numbered in order of creation, so the 3×3 kernels come in order of use.
    kernels = [params[name]["kernel"] for name in sorted(params)]
    projection = [k for k in kernels if k.shape[:2] == (1, 1)]
    first, second = (k for k in kernels if k.shape[:2] == (3, 3))
    assert len(projection) == (strides != 1)

    @jax.jit
    def by_hand(x):
        activated = jax.nn.relu(x)
        shortcut = _conv(activated, projection[0], strides) if projection else x
        return shortcut + _conv(jax.nn.relu(_conv(activated, first, strides)), second)

    actual = jax.jit(block.apply)({"params": params}, x)
    np.testing.assert_allclose(actual, by_hand(x), rtol=1e-5, atol=1e-5)


def test_batch_norm_running_averages_move_by_the_momentum():
    # One training call sets each running average to 0.9·old + 0.1·batch statistic (biased
    # variance over batch and pixels), the Flax ImageNet example's momentum.
    model = models.create("cnn", num_classes=3, channels=(4,), normalization="batch")
    x = _normal((4, 6, 6, 2)) + 3.0
    variables = jax.jit(functools.partial(model.init, train=False))(KEY, x)
    old_mean, old_var = jnp.full((4,), 0.5), jnp.full((4,), 2.0)
    variables["batch_stats"] = {"BatchNorm_0": {"mean": old_mean, "var": old_var}}
    state = _jit_intermediates(model, variables, x, train=True, mutable=["batch_stats"])
    features = state["intermediates"]["Conv_0"]["__call__"][0]
    batch_mean, batch_var = features.mean((0, 1, 2)), features.var((0, 1, 2))
    new = state["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(new["mean"], 0.9 * old_mean + 0.1 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(new["var"], 0.9 * old_var + 0.1 * batch_var, rtol=1e-4)


def test_batch_norm_updates_statistics_in_training_mode():
    model = models.create("wrn10_1", num_classes=10)
    x = _normal((4, 8, 8, 3)) + 3.0
    variables = model.init(KEY, x, train=False)
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert len(after) == len(before) > 0
    assert any(not np.allclose(a, b) for a, b in zip(after, before, strict=True))


@pytest.mark.slow
def test_axis_name_synchronizes_batch_norm_across_devices():
    # Four shards of 2 under shard_map with axis_name give the full-batch statistics of 8.
    name, options = "mlp", {"normalization": "batch", "widths": (16,)}
    x = _normal((8, 8, 8, 3)) * jnp.arange(1.0, 9.0)[:, None, None, None]
    single = models.create(name, num_classes=10, **options)
    variables = single.init(KEY, x, train=False)
    reference, _ = single.apply(variables, x, train=True, mutable=["batch_stats"])
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))

    def sharded(axis_name):
        model = models.create(name, num_classes=10, axis_name=axis_name, **options)
        apply = functools.partial(model.apply, train=True, mutable=["batch_stats"])
        step = jax.shard_map(
            lambda v, x: apply(v, x)[0],
            mesh=mesh,
            in_specs=(PartitionSpec(), PartitionSpec("data")),
            out_specs=PartitionSpec("data"),
            check_vma=False,
        )
        return step(variables, x)

    np.testing.assert_allclose(sharded("data"), reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(sharded(None), reference, rtol=1e-2)


@pytest.mark.parametrize(
    ("name", "options", "input_shape", "hidden", "readout"),
    [
        ("mlp", {"widths": (8,)}, (2, 40), "Dense_0", "Dense_1"),
        ("cnn", {"channels": (4,)}, (2, 6, 6, 3), "Conv_0", "Dense_0"),
    ],
)
@pytest.mark.parametrize(
    ("normalization", "norm_layer", "hidden_bias"),
    # Batch norm centers each feature over the batch, cancelling a per-feature bias before it;
    # layer norm centers each example over the features, which does not.
    [(None, None, True), ("batch", "BatchNorm_0", False), ("layer", "LayerNorm_0", True)],
)
def test_hidden_biases_are_dropped_only_before_batch_norm(
    name, options, input_shape, hidden, readout, normalization, norm_layer, hidden_bias
):
    model = models.create(
        name, num_classes=3, normalization=normalization, use_bias=True, **options
    )
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    params = jax.eval_shape(lambda x: model.init(KEY, x, train=False), x)["params"]
    assert ("bias" in params[hidden]) == hidden_bias
    assert "bias" in params[readout]
    if norm_layer:
        assert "bias" in params[norm_layer]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("vgg16", {}, "unknown model 'vgg16'; known: mlp, cnn, wrn{depth}_{width}, resnet18"),
        ("wrn27_10", {}, "depth = 6n+4"),
        ("resnet19", {}, "unknown model 'resnet19'"),
        ("mlp", {"width": 3}, "no option 'width'; options: widths, normalization"),
        ("cnn", {"parameterization": "mup"}, "parameterization='mup'"),
        ("wrn16_4", {"normalization": "layer"}, "normalization='layer' is not one of"),
        ("mlp", {"dtype": "int8"}, "dtype='int8' is not a floating-point dtype"),
        # jnp.dtype(None) would be float64.
        ("mlp", {"dtype": None}, "dtype=None is not a floating-point dtype"),
        ("cnn", {"dtype": "float64"}, "dtype='float64' needs jax_enable_x64"),
        ("mlp", {"widths": (8, 0)}, "widths=(8, 0)"),
        ("mlp", {"use_bias": "no"}, "use_bias='no'"),
        ("wrn16_4", {"fused_batch_norm": 1}, "fused_batch_norm=1 must be a bool"),
    ],
)
def test_bad_names_and_options_give_one_line_errors(name, options, message):
    with pytest.raises((ValueError, TypeError)) as error:
        models.create(name, num_classes=10, **options)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_float64_is_allowed_with_x64():
    # The float64 check above depends on the x64 setting of the moment: with x64 the model
    # really computes in float64.
    x = np.ones((2, 5))
    with jax.enable_x64(True):
        model = models.create("mlp", num_classes=3, widths=(4,), dtype="float64")
        variables = model.init(KEY, x, train=False)
        _, state = model.apply(variables, x, train=False, capture_intermediates=True)
    assert state["intermediates"]["Dense_0"]["__call__"][0].dtype == jnp.float64
