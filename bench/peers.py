"""The recipes people would use instead of fmnist, reimplemented from their published descriptions for
bench/bench_leaderboard.py: each trains on fmnist's training split of a seed (48,000 images), fixed settings (none
is chosen on validation, so none needs it), and is measured once on the 10,000 test images.

- `pytorch_examples`: pytorch/examples' MNIST CNN, https://github.com/pytorch/examples/blob/main/mnist/main.py:
  conv 32 3x3, conv 64 3x3, 2x2 max-pool, dropout 0.25, fc 9216-128, dropout 0.5, fc 128-10; Adadelta lr 1.0,
  StepLR gamma 0.7 every epoch, batch 64, 14 epochs, inputs normalised. The original evaluates on the test set
  after every epoch (it prints, it chooses nothing); here test is measured once, at the end.
- `fastai_resnet`: the small ResNet of fastai's course22p2 `14_augment`,
  https://github.com/fastai/course22p2/blob/master/nbs/14_augment.ipynb: ResBlocks 1-16 (5x5), then 16-32-64-
  128-256-512 with stride 2 (average-pool shortcut), a bias-free linear head with batch norm; AdamW, one-cycle
  (lr 2e-2), batch 1024, 1-pixel padded random crops and flips, flip test-time augmentation; 20 epochs there. The
  course uses Fashion-MNIST's test set as its validation set and watches it every epoch; here test is measured
  once, at the end.
- `logistic`, `mlp_sklearn`: scikit-learn's LogisticRegression (lbfgs, 100 iterations) and
  MLPClassifier(hidden_layer_sizes=(100,)) with its defaults, on pixels scaled to [0, 1]: the two scikit-learn
  rows of the dataset's own benchmark (https://github.com/zalandoresearch/fashion-mnist#benchmark).
- `hog_svm`: HOG features (scikit-image: 9 orientations, 4x4-pixel cells, 2x2-cell blocks) and a LinearSVC
  (C = 1, scikit-learn's default), the classic pre-deep-learning pipeline.

Each returns a row: test accuracy, training seconds (fitting only; feature extraction counts as training for HOG),
multiply-adds per image (forward; training counts 3x that per image seen, forward plus backward) where they are
well defined, inference images per second, parameters, epochs.
"""

import math
import time

import numpy as np

PYTORCH_EXAMPLES = "https://github.com/pytorch/examples/blob/main/mnist/main.py"
FASTAI = "https://github.com/fastai/course22p2/blob/master/nbs/14_augment.ipynb"
SKLEARN_BENCHMARK = "https://github.com/zalandoresearch/fashion-mnist#benchmark"
TRAIN_PER_FORWARD = 3  # a training step's multiply-adds per image: forward + backward (about twice the forward)


def row(name, source, fit, measure, **facts):
    """Time `fit()` (returns the model), then `measure(model)` -> (test predictions, images/s)."""
    start = time.perf_counter()
    model = fit()
    seconds = time.perf_counter() - start
    predictions, images_per_s = measure(model)
    return {"recipe": name, "source": source, "train_seconds": round(seconds, 2), **facts} | {
        "predictions": predictions,
        "inference_images_per_s": round(images_per_s, 1),
    }


def timed(predict, images):
    start = time.perf_counter()
    out = predict(images)
    return out, len(images) / max(time.perf_counter() - start, 1e-9)


def flat(images):
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


# -- scikit-learn and scikit-image -----------------------------------------------------------------------------


def logistic(splits, seed, quick=False):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=10 if quick else 100, random_state=seed)
    out = row(
        "scikit-learn LogisticRegression",
        SKLEARN_BENCHMARK,
        lambda: model.fit(flat(splits.x_train), splits.y_train),
        lambda m: timed(m.predict, flat(splits.x_test)),
        parameters=784 * 10 + 10,
        macs_per_image=784 * 10,
    )
    # lbfgs: about one gradient (a forward and a backward pass over every image) per iteration
    return out | {"epochs": int(model.n_iter_.max())}


def mlp_sklearn(splits, seed, quick=False):
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(100,), max_iter=2 if quick else 200, random_state=seed)
    out = row(
        "scikit-learn MLPClassifier(100)",
        SKLEARN_BENCHMARK,
        lambda: model.fit(flat(splits.x_train), splits.y_train),
        lambda m: timed(m.predict, flat(splits.x_test)),
        parameters=784 * 100 + 100 + 100 * 10 + 10,
        macs_per_image=784 * 100 + 100 * 10,
    )
    return out | {"epochs": int(model.n_iter_)}


def hog_features(images):
    from skimage.feature import hog

    return np.stack([hog(im, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2)) for im in images])


def hog_svm(splits, seed, quick=False):
    from sklearn.svm import LinearSVC

    model = LinearSVC(C=1.0, random_state=seed, max_iter=100 if quick else 1000)
    out = row(
        "HOG + LinearSVC",
        "https://scikit-image.org/docs/stable/api/skimage.feature.html#skimage.feature.hog",
        lambda: model.fit(hog_features(splits.x_train), splits.y_train),
        lambda m: timed(lambda x: m.predict(hog_features(x)), splits.x_test),
        macs_per_image=None,  # HOG's gradients and histograms are not multiply-adds of a network
    )
    return out | {"parameters": int(model.coef_.size + model.intercept_.size), "epochs": int(model.n_iter_)}


# -- torch recipes ---------------------------------------------------------------------------------------------


def forward_macs(module, shape=(1, 1, 28, 28)):
    """Multiply-adds of one forward pass of one image through the convolutions and linear layers of `module`."""
    import torch

    total = [0]

    def count(layer, inputs, output):
        if isinstance(layer, torch.nn.Conv2d):
            per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
            total[0] += output[0].numel() * per_output
        elif isinstance(layer, torch.nn.Linear):
            total[0] += layer.in_features * layer.out_features

    hooks = [
        m.register_forward_hook(count) for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(torch.zeros(shape))
    module.train(was_training)
    for hook in hooks:
        hook.remove()
    return total[0]


def _tensors(splits, images):
    import torch

    mean, std = float(splits.mean), float(splits.std)
    return (torch.from_numpy(images.copy()).float().unsqueeze(1) / 255.0 - mean) / std  # a writable copy


def _predict(module, x, tta=False, batch=1000):
    import torch

    module.eval()
    with torch.inference_mode():
        parts = []
        for i in range(0, len(x), batch):
            logits = module(x[i : i + batch])
            if tta:
                logits = logits + module(x[i : i + batch].flip(-1))
            parts.append(logits.argmax(1))
    return torch.cat(parts).numpy()


def pytorch_examples(splits, seed, quick=False, epochs=14):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(9216, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )
    x, y = _tensors(splits, splits.x_train), torch.from_numpy(splits.y_train)
    epochs = 1 if quick else epochs

    def fit():
        optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
        generator = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            for index in torch.randperm(len(x), generator=generator).split(64):
                optimizer.zero_grad()
                nn.functional.cross_entropy(net(x[index]), y[index]).backward()  # = log_softmax + nll_loss
                optimizer.step()
            schedule.step()
        return net

    test = _tensors(splits, splits.x_test)
    facts = {"parameters": sum(p.numel() for p in net.parameters()), "macs_per_image": forward_macs(net)}
    out = row(
        "pytorch/examples MNIST CNN", PYTORCH_EXAMPLES, fit, lambda m: timed(lambda t: _predict(m, t), test), **facts
    )
    return out | {"epochs": epochs, "note": "the original evaluates on test after every epoch (no choice made)"}


def _resnet(nfs=(16, 32, 64, 128, 256, 512)):
    """fastai course22p2's ResNet (13_resnet, used by 14_augment) with its GeneralRelu(leak 0.1, sub 0.4)."""
    from torch import nn

    class GeneralRelu(nn.Module):
        def forward(self, x):
            return nn.functional.leaky_relu(x, 0.1) - 0.4

    def conv(ni, nf, ks=3, stride=2, act=True):
        layers = [nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False), nn.BatchNorm2d(nf)]
        return nn.Sequential(*layers, *([GeneralRelu()] if act else []))

    class ResBlock(nn.Module):
        def __init__(self, ni, nf, stride=1, ks=3):
            super().__init__()
            self.convs = nn.Sequential(conv(ni, nf, ks, stride=1), conv(nf, nf, ks, stride=stride, act=False))
            self.idconv = nn.Identity() if ni == nf else conv(ni, nf, ks=1, stride=1, act=False)
            self.pool = nn.Identity() if stride == 1 else nn.AvgPool2d(2, ceil_mode=True)
            self.act = GeneralRelu()

        def forward(self, x):
            return self.act(self.convs(x) + self.idconv(self.pool(x)))

    layers = [ResBlock(1, nfs[0], ks=5), *(ResBlock(nfs[i], nfs[i + 1], stride=2) for i in range(len(nfs) - 1))]
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(nfs[-1], 10, bias=False))
    net.append(nn.BatchNorm1d(10))
    for m in net.modules():  # the course's init_weights(leaky=0.1)
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, a=0.1)
    return net


def _augment_batch(x, generator):
    """The course's batch transform: one 1-pixel padded random crop and one coin-flip mirror for the batch."""
    import torch

    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    fill = float(x.min())
    x = torch.nn.functional.pad(x, (1, 1, 1, 1), value=fill)[:, :, dy : dy + 28, dx : dx + 28]
    return x.flip(-1) if torch.rand(1, generator=generator).item() < 0.5 else x


def fastai_resnet(splits, seed, quick=False, epochs=20):
    import torch

    torch.manual_seed(seed)
    net = _resnet()
    x, y = _tensors(splits, splits.x_train), torch.from_numpy(splits.y_train)
    epochs = 1 if quick else epochs
    batches = math.ceil(len(x) / 1024)

    def fit():
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * batches)
        generator = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            for index in torch.randperm(len(x), generator=generator).split(1024):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(_augment_batch(x[index], generator)), y[index]).backward()
                optimizer.step()
                schedule.step()
        return net

    test = _tensors(splits, splits.x_test)
    facts = {"parameters": sum(p.numel() for p in net.parameters()), "macs_per_image": forward_macs(net)}
    predict = lambda m: timed(lambda t: _predict(m, t, tta=True), test)  # noqa: E731
    out = row("fastai course ResNet, one-cycle, flip TTA", FASTAI, fit, predict, **facts)
    return out | {"epochs": epochs, "note": "the course watches the test set as its validation set every epoch"}


PEERS = {
    "logistic": logistic,
    "mlp-sklearn": mlp_sklearn,
    "hog-svm": hog_svm,
    "pytorch-examples": pytorch_examples,
    "fastai-resnet": fastai_resnet,
}
