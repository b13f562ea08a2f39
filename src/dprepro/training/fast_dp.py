"""The `fast` engine: DP-SGD with one forward and one backward pass per batch.

The forward pass keeps, for every Dense and Conv2D layer, its input `a` and its pre-activation
output `z`; one backward pass gives `g = dL/dz`, L being the sum of the microbatch mean losses.
Each microbatch's clipped gradient comes from (a, g) per layer, never from a backward pass per
microbatch:

1. squared norm of each microbatch's gradient, summed over layers:
   - Dense (ghost clipping): ||sum_i a_i g_i^T||^2 over the microbatch's examples i, either
     directly or as sum_ij <a_i, a_j> <g_i, g_j> (Gram form), whichever costs less;
   - Conv2D with one input channel: each example's kernel gradient is formed outright (small:
     kh*kw*Cout numbers each), by a space-to-depth rearrangement of the input and one batched
     matmul with g per shift (conv_example_gradients);
   - other Conv2D: the same two forms as Dense, with `a` cut into patches (one row per output
     position, as the convolution sees it; made from slices of the stride-rearranged input) and g
     one row per position;
   - bias: ||sum over the microbatch's examples and positions of g||^2.
2. clip factor of each microbatch c = min(1, clip / norm).
3. the sum of the clipped gradients is the ordinary gradient with g scaled by c (Dense: a^T (c g);
   Conv2D: patches^T (c g)) or the c-weighted sum of the per-example gradients: no second
   backward pass.
4. add N(0, (clip * noise_multiplier)^2) to the sum, divide by the number of microbatches
   (Poisson sampling: by the expected batch size). The noise of step t and variable i is drawn
   from the stream (seed, "noise", t, i) (sampling.stream_seed; t = optimizer.iterations), so a
   resumed run adds exactly the noise an uninterrupted one adds.

Poisson-sampled batches (sampling.py) come padded, with a mask as sample weight: one example per
microbatch, and a masked row's loss is multiplied by 0 before the backward pass, so its g is exactly
0 (its gradient and norm are 0) and its clip factor is multiplied by 0 as well. No operation mixes
examples, so a masked row cannot change a real example's norm (tests/test_fast_dp.py).

With noise 0 the step equals the `tutorial` engine's (tests/test_engine.py). Layers without
weights (pooling, flatten, dropout) are applied as they are; any other layer with weights is
refused when the model is built.
"""

from __future__ import annotations

import tensorflow as tf

from dprepro.sampling import SecretKey, stream_seed
from dprepro.training.recorder import examples_per_microbatch, record_step

SUPPORTED = (tf.keras.layers.Dense, tf.keras.layers.Conv2D)


def by_microbatch(t: tf.Tensor, num_microbatches: int | None) -> tf.Tensor:
    """[B, ...] -> [num_microbatches, B / num_microbatches, ...] (consecutive examples together);
    None: one example per microbatch, [B, 1, ...], for any B."""
    if num_microbatches is None:
        return t[:, tf.newaxis]
    return tf.reshape(t, tf.concat([[num_microbatches, -1], tf.shape(t)[1:]], axis=0))


def rows_by_microbatch(t: tf.Tensor, num_microbatches: int | None) -> tf.Tensor:
    """[B, P, D] -> [num_microbatches, B * P / num_microbatches, D]; None: unchanged."""
    if num_microbatches is None:
        return t
    return tf.reshape(t, [num_microbatches, -1, t.shape[-1]])


def strided_input(layer: tf.keras.layers.Conv2D, a: tf.Tensor, oh: int, ow: int):
    """The input of an undilated Conv2D rearranged by its stride (space-to-depth), so that each
    kernel row u = s*u' + pu reads x[:, h + u', :, (pu, ...)]: x[b, i, j, (pu, pv, cin)] =
    a_padded[b, sh*i + pu, sw*j + pv, cin], with (nu, nv) shifts per axis."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    batch, height, width, cin = tf.shape(a)[0], a.shape[1], a.shape[2], a.shape[3]
    nu, nv = -(-kh // sh), -(-kw // sw)
    top = left = 0
    if layer.padding == "same":
        top = max((oh - 1) * sh + kh - height, 0) // 2
        left = max((ow - 1) * sw + kw - width, 0) // 2
    rows, cols = oh + nu - 1, ow + nv - 1
    a = tf.pad(a, [[0, 0], [top, max(sh * rows - height - top, 0)],
                   [left, max(sw * cols - width - left, 0)], [0, 0]])[:, :sh * rows, :sw * cols]
    x = tf.reshape(a, [batch, rows, sh, cols, sw, cin])
    return tf.reshape(tf.transpose(x, [0, 1, 3, 2, 4, 5]), [batch, rows, cols, sh * sw * cin]), nu, nv


def shifted_columns(layer: tf.keras.layers.Conv2D, nu: int, nv: int, cin: int) -> list[int]:
    """For each kernel element (u, v, cin), in the kernel's own order, its column among the
    (u', v', pu, pv, cin) columns of conv_patches."""
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    return [(((u // sh * nv + v // sw) * sh + u % sh) * sw + v % sw) * cin + c
            for u in range(kh) for v in range(kw) for c in range(cin)]


def conv_patches(layer: tf.keras.layers.Conv2D, a: tf.Tensor, oh: int, ow: int):
    """[B, oh*ow, kh*kw*Cin]: the input window behind each output position, its columns in the
    order (u', v', pu, pv, cin); and for each kernel element (kernel order) its column there.

    Undilated: concatenated slices of strided_input (no ExtractImagePatches, which costs 1.5-2x
    as much here). Dilated: ExtractImagePatches, columns in kernel order."""
    if tuple(layer.dilation_rate) != (1, 1):
        kh, kw = layer.kernel_size
        (sh, sw), (dh, dw) = layer.strides, layer.dilation_rate
        p = tf.image.extract_patches(a, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1],
                                     rates=[1, dh, dw, 1], padding=layer.padding.upper())
        return tf.reshape(p, [tf.shape(p)[0], -1, p.shape[-1]]), list(range(p.shape[-1]))
    x, nu, nv = strided_input(layer, a, oh, ow)
    p = tf.concat([x[:, u:u + oh, v:v + ow] for u in range(nu) for v in range(nv)], axis=3)
    order = shifted_columns(layer, nu, nv, a.shape[-1])
    p = tf.reshape(p, [tf.shape(p)[0], oh * ow, p.shape[-1]])
    if len(order) < p.shape[-1]:     # kernel not a multiple of the stride: drop the taps beyond it
        keep = sorted(order)
        p = tf.gather(p, keep, axis=2)
        order = [keep.index(c) for c in order]
    return p, order


def conv_example_gradients(layer: tf.keras.layers.Conv2D, a: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
    """Each example's kernel gradient of an undilated Conv2D: [B, kh, kw, Cin, Cout].

    Gradient of example b at tap (u, v): sum over output positions (h, w) of
    a[b, s*h + u, s*w + v, :] g[b, h, w, :]. On strided_input x, every shift (u', v') is one slice
    x[:, u':u'+oh, v':v'+ow] and one batched matmul with g: about (kh/s)(kw/s) small matmuls
    instead of a patch tensor kh*kw times the input, and the same speed on every oneDNN
    instruction set (docs/engines.md, Speed).
    """
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    batch, cin = tf.shape(a)[0], a.shape[3]
    oh, ow, cout = g.shape[1], g.shape[2], g.shape[3]
    x, nu, nv = strided_input(layer, a, oh, ow)
    g = tf.reshape(g, [batch, oh * ow, cout])
    shifts = [tf.matmul(tf.reshape(x[:, u:u + oh, v:v + ow], [batch, oh * ow, sh * sw * cin]), g,
                        transpose_a=True) for u in range(nu) for v in range(nv)]  # each [B, sh*sw*cin, cout]
    k = tf.reshape(tf.stack(shifts, axis=1), [batch, nu, nv, sh, sw, cin, cout])
    k = tf.reshape(tf.transpose(k, [0, 1, 3, 2, 4, 5, 6]), [batch, nu * sh, nv * sw, cin, cout])
    return k[:, :kh, :kw]


def squared_gram_or_direct(a: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
    """||a_m^T g_m||_F^2 for each m of a [M, R, D] and g [M, R, C], by the cheaper form."""
    rows, d, c = a.shape[1], a.shape[2], g.shape[2]
    if rows is not None and rows * rows * (d + c) < rows * d * c:
        return tf.reduce_sum(tf.matmul(a, a, transpose_b=True) * tf.matmul(g, g, transpose_b=True), [1, 2])
    return tf.reduce_sum(tf.square(tf.matmul(a, g, transpose_a=True)), [1, 2])


class LayerGradients:
    """One Dense or Conv2D layer's share of the step: its microbatch squared norms, then its
    clipped gradient sum once the clip factors are known."""

    def __init__(self, layer, a: tf.Tensor, g: tf.Tensor, num_microbatches: int):
        self.layer, self.m = layer, num_microbatches
        conv = isinstance(layer, tf.keras.layers.Conv2D)
        rows = tf.reshape(g, [tf.shape(g)[0], -1, g.shape[-1]])                # [B, P, C]
        self.bias_examples = tf.reduce_sum(rows, axis=1)                       # [B, C]
        self.examples = None   # per-example kernel gradients, when formed outright
        self.order = None      # kernel element -> column of the patches, for conv_patches
        if conv and a.shape[-1] == 1 and tuple(layer.dilation_rate) == (1, 1):
            self.examples = conv_example_gradients(layer, a, g)
            mb = tf.reduce_sum(by_microbatch(self.examples, self.m), axis=1)
            self.kernel_sq = tf.reduce_sum(tf.square(mb), [1, 2, 3, 4])
        else:
            if conv:
                a, self.order = conv_patches(layer, a, g.shape[1], g.shape[2])  # [B, P, D]
            else:
                a = a[:, tf.newaxis, :]
            self.kernel_sq = squared_gram_or_direct(rows_by_microbatch(a, self.m), rows_by_microbatch(rows, self.m))
        self.a, self.g = a, rows

    def squared_norms(self) -> tf.Tensor:
        """[M]: squared L2 norm of each microbatch's gradient of this layer's weights."""
        if not self.layer.use_bias:
            return self.kernel_sq
        bias = tf.reduce_sum(by_microbatch(self.bias_examples, self.m), axis=1)
        return self.kernel_sq + tf.reduce_sum(tf.square(bias), axis=1)

    def clipped_sum(self, example_scale: tf.Tensor) -> list:
        """Sum over examples of scale * gradient, for the kernel (and bias): the clipped sum."""
        kernel_shape = tf.shape(self.layer.kernel)
        if self.examples is not None:
            kernel = tf.tensordot(example_scale, self.examples, axes=1)
        else:
            scaled = self.g * example_scale[:, tf.newaxis, tf.newaxis]
            kernel = tf.matmul(tf.reshape(self.a, [-1, self.a.shape[-1]]),
                               tf.reshape(scaled, [-1, scaled.shape[-1]]), transpose_a=True)
            if self.order is not None and self.order != list(range(len(self.order))):
                kernel = tf.gather(kernel, self.order)                       # into kernel order
        grads = [tf.reshape(kernel, kernel_shape)]
        if self.layer.use_bias:
            grads.append(tf.tensordot(example_scale, self.bias_examples, axes=1))
        return grads


SECRET_DRAWS = 4     # Holohan & Braghin 2021 (arXiv 2107.10138), as Opacus' secure mode: 4 draws, halved


def secret_normal(shape, key: SecretKey, step, variable: int, std: float) -> tf.Tensor:
    """N(0, std^2) as the sum of SECRET_DRAWS independent draws of std `std`, divided by
    sqrt(SECRET_DRAWS): the same distribution, but the low bits of the sum no longer follow one
    draw's floating-point grid, which is what the attacks on a single float Gaussian read (Mironov
    2012; Jin et al. 2022; Haney et al. 2022). Each draw from its own stream (key, "noise", step,
    variable, draw). docs/privacy.md says what this defends and what it does not."""
    total = tf.add_n([tf.random.stateless_normal(shape, stream_seed(key, "noise", step, variable, draw),
                                                 stddev=std, alg="philox") for draw in range(SECRET_DRAWS)])
    return total / SECRET_DRAWS ** 0.5


class FastDPSequential(tf.keras.Sequential):
    """A Sequential model whose train step is DP-SGD computed as described in this module.

    Args:
      l2_norm_clip: clip norm of each microbatch's gradient.
      noise_multiplier: noise std / l2_norm_clip.
      num_microbatches: microbatches per batch; must divide the batch size. None: one example
        per microbatch, any batch size (Poisson sampling).
      layers: the model's layers (Dense, Conv2D, and layers without weights).
      expected_batch_size: Poisson sampling: the noisy sum is divided by this (q * n) instead of
        the number of microbatches; batches carry a 0/1 mask as sample weight (padding rows 0).
      seed: the run's seed, from which the noise of every step is drawn.
    """

    def __init__(self, l2_norm_clip: float, noise_multiplier: float, num_microbatches: int | None,
                 layers=None, name=None, expected_batch_size: int | None = None, seed: int = 0):
        super().__init__(layers=layers, name=name)
        for layer in self.layers:
            if layer.trainable_weights and not isinstance(layer, SUPPORTED):
                raise ValueError(f"fast engine: layer {layer.name} ({type(layer).__name__}) is not supported")
        if expected_batch_size is not None and num_microbatches is not None:
            raise ValueError("fast engine: Poisson sampling (expected_batch_size) needs num_microbatches=None")
        self.l2_norm_clip = l2_norm_clip
        self.noise_multiplier = noise_multiplier
        self.num_microbatches = num_microbatches
        self.expected_batch_size = expected_batch_size
        self.seed = seed

    def forward(self, x):
        """Logits, plus (layer, input, pre-activation output) of each layer with weights."""
        kept = []
        h = x
        for layer in self.layers:
            if not isinstance(layer, SUPPORTED):
                h = layer(h, training=True)
                continue
            activation, layer.activation = layer.activation, tf.keras.activations.linear
            try:
                z = layer(h)
            finally:            # the layer keeps its activation even when the call fails
                layer.activation = activation
            kept.append((layer, h, z))
            h = activation(z)
        return h, kept

    def backward(self, x, y, mask=None):
        """Forward pass and one backward pass: logits, (layer, input, output) kept per weighted
        layer, and g = dL/dz for each, L being the sum of the microbatch mean losses (masked rows'
        losses multiplied by 0, so their g is exactly 0)."""
        with tf.GradientTape() as tape:
            logits, kept = self.forward(x)
            tape.watch([z for _, _, z in kept])
            per_example = tf.keras.losses.categorical_crossentropy(y, logits, from_logits=True)
            if mask is not None:
                per_example = per_example * mask
            loss = tf.reduce_sum(tf.reduce_mean(by_microbatch(per_example, self.num_microbatches), axis=1))
        return logits, kept, tape.gradient(loss, [z for _, _, z in kept])

    def example_scale(self, parts: list, batch_size, mask=None) -> tf.Tensor:
        """[B]: the clip factor min(1, clip / norm) of each example's microbatch (0 if masked)."""
        norms = tf.sqrt(tf.add_n([part.squared_norms() for part in parts]))                 # [M]
        clip = self.clip_factors(norms)                                                      # [M]
        if self.num_microbatches is not None:
            clip = tf.repeat(clip, batch_size // self.num_microbatches)
        return clip if mask is None else clip * mask

    def clip_factors(self, norms: tf.Tensor) -> tf.Tensor:
        """min(1, clip / norm) for each norm."""
        return self.l2_norm_clip / tf.maximum(norms, self.l2_norm_clip)

    def applied_clip(self) -> float | None:
        """The clip norm the step applies, as the privacy ledger records it (None: no clipping)."""
        return self.l2_norm_clip

    def noisy_sum(self, grads: list) -> list:
        """Add N(0, (clip * noise_multiplier)^2) to each clipped sum: one draw per coordinate, or under
        secret randomness the sum of SECRET_DRAWS draws scaled back to that std (secret_normal)."""
        std = self.l2_norm_clip * self.noise_multiplier
        if std == 0:
            return grads
        step = self.optimizer.iterations
        if isinstance(self.seed, SecretKey):
            return [gr + secret_normal(tf.shape(gr), self.seed, step, i, std) for i, gr in enumerate(grads)]
        return [gr + tf.random.stateless_normal(tf.shape(gr), stream_seed(self.seed, "noise", step, i),
                                                stddev=std, alg="philox") for i, gr in enumerate(grads)]

    def noisy_mean(self, grads: list) -> list:
        """The noisy sum divided by the number of microbatches (Poisson sampling: by the expected
        batch size). An audit overrides it (audit/audited_step.py) to add its canaries."""
        return self.mean_of(self.noisy_sum(grads))

    def mean_of(self, noisy: list) -> list:
        m = self.expected_batch_size or self.num_microbatches
        return [gr / m for gr in noisy]

    def train_step(self, data):
        x, y, mask = tf.keras.utils.unpack_x_y_sample_weight(data)                   # mask: Poisson padding
        logits, kept, grads_z = self.backward(x, y, mask)                             # 1 backward pass
        parts = [LayerGradients(layer, a, g, self.num_microbatches)                  # per-layer norms
                 for (layer, a, _), g in zip(kept, grads_z)]
        scale = self.example_scale(parts, tf.shape(x)[0], mask)                       # clip factors
        grads = [gr for part in parts for gr in part.clipped_sum(scale)]              # clipped sum
        grads = self.noisy_mean(grads)                                                # noise
        variables = [v for part in parts for v in part.layer.trainable_weights]
        self.optimizer.apply_gradients(zip(grads, variables))
        record_step(self, self.noise_multiplier, self.applied_clip(),                              # ledger
                    examples_per_microbatch(x, self.num_microbatches))
        update_metrics(self, y, logits, mask)
        return {metric.name: metric.result() for metric in self.metrics}


def update_metrics(model: tf.keras.Model, y, logits, mask=None) -> None:
    """The step's loss and accuracy, over the real rows only when a 0/1 mask marks padding (the
    accuracy from the unmasked rows themselves: Keras weights only `weighted_metrics`, and through
    a shape check that has no GPU kernel)."""
    model.compiled_loss(y, logits, sample_weight=mean_one(mask))
    if mask is not None:
        keep = mask > 0
        y, logits = tf.boolean_mask(y, keep), tf.boolean_mask(logits, keep)
    model.compiled_metrics.update_state(y, logits)


def mean_one(mask):
    """A 0/1 mask rescaled to mean 1, so that Keras' loss (a mean over all rows) is the mean over
    the real ones; None stays None."""
    if mask is None:
        return None
    return mask * tf.cast(tf.size(mask), mask.dtype) / tf.maximum(tf.reduce_sum(mask), 1.0)
