"""Tests for l2reg.flops: model FLOPs in all and by layer."""

import re

import jax
import jax.numpy as jnp

from l2reg import flops, models


def test_matrix_product_and_scan_counts():
    a, b = jnp.ones((3, 5)), jnp.ones((5, 7))
    assert flops.matmul_flops(jnp.dot, a, b) == 2 * 3 * 5 * 7

    def repeated(a, b):
        return jax.lax.scan(lambda carry, _: (carry, carry @ b), a, None, length=4)[1]

    assert flops.matmul_flops(jax.jit(repeated), a, b) == 4 * 2 * 3 * 5 * 7


def test_convolution_counts_windows_and_channels():
    images = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
    kernel = jax.ShapeDtypeStruct((3, 3, 3, 16), jnp.float32)
    conv = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    # Output (2, 4, 4, 16), each a 3·3·3 window.
    assert flops.matmul_flops(conv, images, kernel) == 2 * (2 * 4 * 4 * 16) * 27


def training_loss(name, size, *, abstract=True):
    """The summed logits of model `name` in training mode on two size×size images, as a
    function of (params, batch_stats), and those arguments (shapes only when `abstract`)."""
    model = models.create(name, num_classes=10)
    images = jnp.zeros((2, size, size, 3))
    init = lambda: model.init(jax.random.key(0), images, train=False)
    variables = jax.eval_shape(init) if abstract else init()

    def loss(params, batch_stats):
        logits, _ = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        return logits.sum()

    return loss, (variables["params"], variables["batch_stats"])


def test_wrn28_10_training_step_is_about_31_gflop_per_image():
    loss, arguments = training_loss("wrn28_10", 32)
    forward = flops.matmul_flops(loss, *arguments) / 2
    step = flops.matmul_flops(jax.grad(loss), *arguments) / 2
    # 5.25 G multiply-adds forward (Zagoruyko & Komodakis); backward ≈ 2× forward (no input
    # gradient for the stem).
    assert 10.4e9 < forward < 10.6e9
    assert 31.0e9 < step < 31.8e9


def test_shard_map_counts_every_device():
    mesh = jax.sharding.Mesh(jax.devices()[:4], ("data",))
    spec = jax.sharding.PartitionSpec("data")
    sharded = jax.shard_map(
        jnp.dot, mesh=mesh, in_specs=(spec, jax.sharding.PartitionSpec()), out_specs=spec
    )
    a, b = jnp.ones((8, 5)), jnp.ones((5, 7))
    assert flops.matmul_flops(sharded, a, b) == flops.matmul_flops(jnp.dot, a, b)


def test_cond_counts_every_branch():
    # The branch taken is known only at run time, so each one's products are counted: the sum
    # over branches, whichever predicate is traced, and × the length inside a scan.
    a, b, c = jnp.ones((3, 5)), jnp.ones((5, 7)), jnp.ones((5, 2))
    small, large = 2 * 3 * 5 * 2, 2 * 3 * 5 * 7

    def two_branches(predicate, a, b, c):
        return jax.lax.cond(predicate, lambda: a @ c, lambda: (a @ b)[:, :2])

    for predicate in (True, False):
        assert flops.matmul_flops(two_branches, predicate, a, b, c) == small + large

    def three_branches(index, a, b, c):
        return jax.lax.switch(index, [lambda: a @ c, lambda: (a @ b)[:, :2], lambda: a[:, :2]])

    assert flops.matmul_flops(three_branches, 0, a, b, c) == small + large

    def scanned(a, b, c):
        step = lambda carry, predicate: (carry, two_branches(predicate, a, b, c))
        return jax.lax.scan(step, 0, jnp.array([True, False, False, True]))[1]

    assert flops.matmul_flops(scanned, a, b, c) == 4 * (small + large)


def test_layer_name_drops_jits_and_unwraps_transformations():
    assert flops.layer_name("jit(step)/transpose(jvp(WideResNet))/WideBlock_2/Conv_1") == (
        "WideResNet/WideBlock_2/Conv_1"
    )
    assert flops.layer_name("vmap(MLP)/Dense_0/jit(_where)") == "MLP/Dense_0"
    assert flops.layer_name("") == ""


def wrn10_1_step():
    """A WRN-10-1 training-mode loss gradient on two 16×16 images, and its arguments."""
    loss, arguments = training_loss("wrn10_1", 16, abstract=False)
    return jax.jit(jax.grad(loss)), arguments


def test_flops_by_layer_split_the_total_among_the_models_modules():
    step, arguments = wrn10_1_step()
    by_layer = flops.matmul_flops_by_layer(step, *arguments)
    assert sum(by_layer.values()) == flops.matmul_flops(step, *arguments)
    # The stem (16×16×16 outputs of 3·3·3 windows) has a forward pass and a filter gradient,
    # no input gradient; a 3×3 conv inside a block (16 channels in and out) all three passes.
    assert by_layer["WideResNet/Conv_0"] == 2 * (2 * 2 * 16 * 16 * 16 * 27)
    assert by_layer["WideResNet/WideBlock_0/Conv_1"] == 3 * (2 * 2 * 16 * 16 * 16 * 144)
    # The readout (2 images × 64 features → 10 logits): the forward product, the input gradient
    # and the weight gradient, 2·64·10 multiply-adds each.
    assert by_layer["WideResNet/Dense_0"] == 3 * (2 * 2 * 64 * 10)


def test_flops_layers_are_named_as_xla_names_the_compiled_convolutions():
    # profile_summary.py joins a GPU trace's per-op names (XLA's op_name metadata) with these
    # counts: every convolution XLA compiles must map to a counted layer, and back.
    step, arguments = wrn10_1_step()
    by_layer = flops.matmul_flops_by_layer(step, *arguments)
    compiled = step.lower(*arguments).compile().as_text()
    op_names = re.findall(r"= \S+ convolution\(.*op_name=\"([^\"]+)\"", compiled)
    assert op_names
    compiled_layers = {flops.layer_name(name.rpartition("/")[0]) for name in op_names}
    assert compiled_layers == set(by_layer) - {"WideResNet/Dense_0"}
