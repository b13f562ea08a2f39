"""The `ghost` engine: DP-SGD without materialising a gradient per microbatch.

One forward pass keeps, for every Dense and Conv2D layer, its input `a` and its pre-activation
output `z`; one backward pass gives `g = dL/dz`, L being the sum of the microbatch mean losses.
Everything else comes from (a, g) per layer:

- squared norm of each microbatch's gradient of W: for Dense ||sum_i a_i g_i^T||^2, for Conv2D
  the same with `a` cut into patches (one row per output position). Two equal ways:
  direct, form the (D x C) gradient per microbatch and square it (cost ~ P*D*C), or
  Gram ("ghost"), sum of <a_p, a_q> <g_p, g_q> over position pairs (cost ~ P^2*(D+C));
  the cheaper one is chosen per layer from its shapes. Bias: ||sum over positions of g||^2.
- clip factor of each microbatch c = min(1, clip / norm), then the clipped sum of gradients
  is the ordinary weight gradient with g scaled by c per example ("book-keeping": no second
  backward pass): Dense a^T (c g), Conv2D Conv2DBackpropFilter(a, c g).
- add N(0, (clip * noise_multiplier)^2) to the sum, divide by the number of microbatches.

The step equals the tutorial's (tests/test_engine.py). Layers without weights (pooling,
flatten) are applied as they are; any other layer with weights is refused at build time.
"""

from __future__ import annotations

import tensorflow as tf

SUPPORTED = (tf.keras.layers.Dense, tf.keras.layers.Conv2D)


def by_microbatch(t: tf.Tensor, num_microbatches: int) -> tf.Tensor:
    """[B, ...] -> [num_microbatches, B / num_microbatches, ...] (consecutive examples together)."""
    return tf.reshape(t, tf.concat([[num_microbatches, -1], tf.shape(t)[1:]], axis=0))


def conv_patches(layer: tf.keras.layers.Conv2D, a: tf.Tensor) -> tf.Tensor:
    """[B, H, W, Cin] -> [B, P, kh*kw*Cin]: the input window behind each output position."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = layer.dilation_rate
    p = tf.image.extract_patches(a, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1],
                                 rates=[1, dh, dw, 1], padding=layer.padding.upper())
    return tf.reshape(p, [tf.shape(p)[0], -1, p.shape[-1]])


def squared_norms(layer, a: tf.Tensor, g: tf.Tensor, num_microbatches: int) -> tf.Tensor:
    """Squared L2 norm of each microbatch's gradient of this layer's kernel and bias: [M]."""
    if isinstance(layer, tf.keras.layers.Conv2D):
        a = conv_patches(layer, a)                        # [B, P, D]
        g = tf.reshape(g, [tf.shape(g)[0], -1, g.shape[-1]])  # [B, P, C]
    else:
        a, g = a[:, tf.newaxis, :], g[:, tf.newaxis, :]   # one "position" per example
    # Rows of one microbatch become positions of one "example": [M, m*P, D] and [M, m*P, C].
    a = tf.reshape(a, [num_microbatches, -1, a.shape[-1]])
    g = tf.reshape(g, [num_microbatches, -1, g.shape[-1]])
    rows, d, c = a.shape[1], a.shape[-1], g.shape[-1]
    if rows is not None and rows * rows * (d + c) < rows * d * c:
        kernel = tf.reduce_sum(tf.matmul(a, a, transpose_b=True) * tf.matmul(g, g, transpose_b=True), [1, 2])
    else:
        kernel = tf.reduce_sum(tf.square(tf.einsum("mpd,mpc->mdc", a, g)), [1, 2])
    if not layer.use_bias:
        return kernel
    return kernel + tf.reduce_sum(tf.square(tf.reduce_sum(g, axis=1)), axis=1)


def weighted_gradients(layer, a: tf.Tensor, g: tf.Tensor) -> list:
    """Gradient of sum_i <g_i, z_i> with respect to the layer's kernel (and bias)."""
    if isinstance(layer, tf.keras.layers.Conv2D):
        kernel = tf.raw_ops.Conv2DBackpropFilter(
            input=a, filter_sizes=tf.shape(layer.kernel), out_backprop=g,
            strides=[1, *layer.strides, 1], padding=layer.padding.upper(),
            dilations=[1, *layer.dilation_rate, 1])
        bias_axes = [0, 1, 2]
    else:
        kernel = tf.matmul(a, g, transpose_a=True)
        bias_axes = [0]
    return [kernel, tf.reduce_sum(g, axis=bias_axes)] if layer.use_bias else [kernel]


class GhostClippingSequential(tf.keras.Sequential):
    """A Sequential model whose train step is DP-SGD by ghost clipping and book-keeping.

    Args:
      l2_norm_clip: clip norm of each microbatch's gradient.
      noise_multiplier: noise std / l2_norm_clip.
      num_microbatches: microbatches per batch; must divide the batch size.
      layers: the model's layers (Dense, Conv2D, and layers without weights).
    """

    def __init__(self, l2_norm_clip: float, noise_multiplier: float, num_microbatches: int,
                 layers=None, name=None):
        super().__init__(layers=layers, name=name)
        for layer in self.layers:
            if layer.trainable_weights and not isinstance(layer, SUPPORTED):
                raise ValueError(f"ghost engine: layer {layer.name} ({type(layer).__name__}) is not supported")
        self.l2_norm_clip = l2_norm_clip
        self.noise_multiplier = noise_multiplier
        self.num_microbatches = num_microbatches

    def forward(self, x):
        """Logits, plus (layer, input, pre-activation output) of each layer with weights."""
        kept = []
        h = x
        for layer in self.layers:
            if not isinstance(layer, SUPPORTED):
                h = layer(h, training=True)
                continue
            activation, layer.activation = layer.activation, tf.keras.activations.linear
            z = layer(h)
            layer.activation = activation
            kept.append((layer, h, z))
            h = activation(z)
        return h, kept

    def train_step(self, data):
        x, y = data
        m = self.num_microbatches
        with tf.GradientTape() as tape:
            logits, kept = self.forward(x)
            tape.watch([z for _, _, z in kept])
            per_example = tf.keras.losses.categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.reduce_sum(tf.reduce_mean(by_microbatch(per_example, m), axis=1))
        grads_z = tape.gradient(loss, [z for _, _, z in kept])
        norms = tf.sqrt(tf.add_n([squared_norms(layer, a, g, m) for (layer, a, _), g in zip(kept, grads_z)]))
        clip = self.l2_norm_clip / tf.maximum(norms, self.l2_norm_clip)            # [M]
        per_example_clip = tf.repeat(clip, tf.shape(x)[0] // m)                       # [B]
        grads = []
        for (layer, a, _), g in zip(kept, grads_z):
            scale = tf.reshape(per_example_clip, [-1] + [1] * (g.shape.rank - 1))
            grads += weighted_gradients(layer, a, g * scale)
        std = self.l2_norm_clip * self.noise_multiplier
        grads = [(gr + tf.random.normal(tf.shape(gr), stddev=std)) / m if std > 0 else gr / m for gr in grads]
        variables = [v for layer, _, _ in kept for v in ([layer.kernel, layer.bias] if layer.use_bias else [layer.kernel])]
        self.optimizer.apply_gradients(zip(grads, variables))
        self.compiled_loss(y, logits)
        self.compiled_metrics.update_state(y, logits)
        return {metric.name: metric.result() for metric in self.metrics}
