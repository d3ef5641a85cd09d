"""A ReLU multi-layer perceptron of any depth: parameters, forward pass, backward pass.

`MLP([784, 128, 10])` holds weights (784, 128), (128, 10) and their biases in one flat list
[w0, b0, w1, b1, ...], the order the optimizers and the weight files use.
"""

import numpy as np

from fmnist.models.scratch import functional as F


class MLP:
    def __init__(self, layer_sizes, rng=None, dtype=np.float32):
        """layer_sizes: [D_in, hidden..., C]; `rng` (a numpy Generator) draws the He initialisation."""
        self.layer_sizes = [int(s) for s in layer_sizes]
        if len(self.layer_sizes) < 2 or min(self.layer_sizes) < 1:
            raise ValueError(f"layer sizes {self.layer_sizes}: need an input and an output width, all >= 1")
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(0) if rng is None else rng
        self.params = []
        for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True):
            self.params.extend(F.he_init(rng, fan_in, fan_out, self.dtype))

    @property
    def weights(self):
        return self.params[0::2]

    @property
    def biases(self):
        return self.params[1::2]

    def num_parameters(self):
        return int(sum(p.size for p in self.params))

    def forward(self, x):
        """x (N, D_in) -> (logits (N, C), activations): the input of each layer, kept for `backward`."""
        activations = [x]
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = F.linear_forward(activations[-1], w, b)
            activations.append(F.relu_forward(z, out=z))
        return F.linear_forward(activations[-1], self.weights[-1], self.biases[-1]), activations

    def backward(self, dlogits, activations, weight_decay=0.0):
        """Gradients [dw0, db0, dw1, db1, ...] matching `params`, from dL/d(logits) (N, C).

        `dlogits` is overwritten (it becomes a scratch buffer). With weight_decay the L2 penalty's gradient is
        included, matching `loss_and_grads`.
        """
        grads = [None] * len(self.params)
        dout = dlogits
        for i in range(len(self.weights) - 1, -1, -1):
            w, x = self.weights[i], activations[i]
            dx, dw, db = F.linear_backward(dout, x, w, need_dx=i > 0)
            grads[2 * i] = F.add_l2_grad(dw, w, weight_decay)
            grads[2 * i + 1] = db
            if i > 0:
                dout = F.relu_backward(dx, x, out=dx)
        return grads

    def input_gradient(self, x, dlogits):
        """dL/dx (N, D_in) from dL/d(logits) (N, C) at inputs x (N, D_in): the backward pass carried one layer
        further, to the input, without the weight gradients. With dlogits a one-hot row per example it is the
        gradient of that class's logit with respect to the input (what an attribution map is made of)."""
        x = np.asarray(x, dtype=self.dtype)
        _, activations = self.forward(x)
        dout = np.asarray(dlogits, dtype=self.dtype)
        for i in range(len(self.weights) - 1, -1, -1):
            dx = dout @ self.weights[i].T
            dout = F.relu_backward(dx, activations[i], out=dx) if i > 0 else dx
        return dout

    def loss_and_grads(self, x, labels, weight_decay=0.0):
        """One training step's maths on a batch x (N, D_in), labels (N,).

        Returns (loss including the L2 penalty, data loss alone, logits (N, C), grads like `params`).
        """
        logits, activations = self.forward(x)
        data_loss, dlogits = F.softmax_cross_entropy(logits, labels)
        grads = self.backward(dlogits, activations, weight_decay)
        return data_loss + F.l2_penalty(self.weights, weight_decay), data_loss, logits, grads

    def logits(self, x, batch_size=4096):
        """(N, D_in) -> (N, C), in chunks so that activations of a large set never sit in memory at once."""
        x = np.asarray(x, dtype=self.dtype)
        out = np.empty((len(x), self.layer_sizes[-1]), dtype=self.dtype)
        for start in range(0, len(x), batch_size):
            out[start : start + batch_size] = self.forward(x[start : start + batch_size])[0]
        return out

    def copy_params(self):
        return [p.copy() for p in self.params]

    def set_params(self, arrays):
        """Copy `arrays` (shapes as `params`) into the parameters, in place so optimizers keep their references."""
        for p, a in zip(self.params, arrays, strict=True):
            if p.shape != a.shape:
                raise ValueError(f"parameter shape {a.shape}, expected {p.shape}")
            p[...] = a
