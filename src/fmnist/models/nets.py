"""The torch networks: a linear model, an MLP and two CNNs (a whitened three-group one, and a plain
five-convolution one).

Every network takes normalised images (N, 1, 28, 28) float32 and returns logits (N, 10); the CNNs also expose
`features(x) -> (N, D)`, the vector their last fully connected layer (the classifier) reads. A network that
derives something from the training images (the whitened CNN's first layer) does it in `prepare(x)`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.data.dataset import NUM_CLASSES, SIDE

PIXELS = SIDE * SIDE


class Linear(nn.Module):
    """Multinomial logistic regression: 784 -> 10."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(PIXELS, NUM_CLASSES)

    def forward(self, x):
        return self.fc(x.flatten(1))


class MLP(nn.Module):
    """784 -> hidden... -> 10 with ReLU and dropout after every hidden layer."""

    def __init__(self, hidden=(512, 256), dropout=0.2):
        super().__init__()
        layers, width = [], PIXELS
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


def conv_block(c_in, c_out, pool=False):
    """3x3 convolution (same padding, no bias: batch norm supplies it), optional 2x2 max-pool, batch norm, ReLU.

    Pooling before batch norm and ReLU gives the same kind of layer (max-pool commutes with ReLU) at a quarter
    of their cost: measured 26 % faster training steps (bench/NOTES.md). ceil_mode keeps the last row and column of
    an odd-sized map (7 -> 4, not 3).
    """
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def sides(pools):
    """Input side of each of the five convolutions, and the side after the last one, for the given pools."""
    side, out = SIDE, []
    for layer in range(1, 6):
        out.append(side)
        if layer in pools:
            side = (side + 1) // 2
    return out, side


class CNN(nn.Module):
    """Five conv-BN-ReLU layers with max-pooling, dropout, a fully connected feature layer, then the classifier.

    `pools` names the convolutions (1-5) followed by a 2x2 max-pool. (1, 3, 5) pools right after the first
    convolution, so the costly layers run at 14x14 and below (on a CPU the FLOPs per image set the epoch time);
    (2, 4, 5) keeps two convolutions at full resolution. After the convolutions: dropout, fc -> features (ReLU),
    dropout, classifier.
    """

    def __init__(self, widths=(32, 64, 64, 128, 128), feature_dim=256, dropout=0.3, pools=(1, 3, 5)):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths: expected 5 convolution widths, got {len(widths)}")
        if not set(pools) <= {1, 2, 3, 4, 5}:
            raise ValueError(f"pools: convolution numbers must be 1-5, got {pools}")
        _, last_side = sides(pools)
        blocks = [
            conv_block(c_in, c_out, pool=i in pools)
            for i, (c_in, c_out) in enumerate(zip((1, *widths[:-1]), widths, strict=True), 1)
        ]
        self.body = nn.Sequential(
            *blocks,
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(widths[-1] * last_side**2, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, NUM_CLASSES)

    def features(self, x):
        """(N, 1, 28, 28) -> (N, feature_dim): the image's feature vector, non-negative (after ReLU)."""
        return self.body(x)

    def head(self, features):
        """features(x) -> logits: what `forward` does after the features."""
        return self.classifier(self.dropout(features))

    def forward(self, x):
        return self.head(self.features(x))

    @classmethod
    def from_hparams(cls, hp):
        return cls(tuple(hp["widths"]), hp["feature_dim"], hp["dropout"], tuple(hp["pools"]))


class WhitenedCNN(nn.Module):
    """A fast CNN for a CPU, in the spirit of KellerJordan/airbench (bench/NOTES.md has the measurements).

    A frozen 3x3 stride-2 convolution whitens the input (the eigenvectors of the training images' 3x3 patch
    covariance and their negatives: 18 channels, at 14x14 from the start because full-size maps cost a CPU too
    much), then three groups (conv, [max-pool], BN, GELU, conv, BN, GELU) of `widths` channels, the first two
    halving the maps, a global max-pool (the features) and a bias-free linear classifier scaled by `scale`.
    Batch norms train only their biases; the 3x3 convolutions start as identities where their shapes allow.
    """

    def __init__(self, widths=(32, 64, 128), scale=1 / 9, patch=3):
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths: expected 3 group widths, got {len(widths)}")
        self.stem = nn.Conv2d(1, 2 * patch * patch, patch, stride=2, padding=(patch - 1) // 2)
        self.stem.weight.requires_grad_(False)
        inputs = (self.stem.out_channels, *widths[:-1])
        groups = [_group(c_in, c_out, pool=i < 2) for i, (c_in, c_out) in enumerate(zip(inputs, widths, strict=True))]
        self.body = nn.Sequential(nn.GELU(), *groups, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(widths[-1], NUM_CLASSES, bias=False)
        self.scale = scale
        for conv in self.body.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.dirac_(conv.weight.data[: min(conv.in_channels, conv.out_channels)])

    @classmethod
    def from_hparams(cls, hp):
        return cls(tuple(hp["widths"]))

    def prepare(self, x, eps=5e-4):
        """Whitening filters from x (N, 1, 28, 28): each eigenvector of the covariance of all the patches inside the
        images (the zero-padded border excluded), divided by sqrt(eigenvalue + eps)."""
        side = self.stem.kernel_size[0]
        # On the CPU whatever the device (MPS has no float64): the same filters everywhere.
        patches = F.unfold(x.cpu(), side).transpose(1, 2).reshape(-1, side * side).double()
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, 1, side, side)
        self.stem.weight.data.copy_(torch.cat([filters, -filters]).float())

    def features(self, x):
        """(N, 1, 28, 28) -> (N, widths[-1]): the globally max-pooled last group."""
        return self.body(self.stem(x))

    def head(self, features):
        """features(x) -> logits: what `forward` does after the features."""
        return self.classifier(features) * self.scale

    def forward(self, x):
        return self.head(self.features(x))


def _group(c_in, c_out, pool):
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    layers += [nn.MaxPool2d(2)] if pool else []
    layers += [_batch_norm(c_out), nn.GELU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)]
    return nn.Sequential(*layers, _batch_norm(c_out), nn.GELU())


def _batch_norm(width):
    # A fast-moving average for a short schedule; the scale stays 1 (only the bias trains), as in airbench.
    norm = nn.BatchNorm2d(width, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad_(False)
    return norm


CNNS = {"whitened": WhitenedCNN, "plain": CNN}  # the cnn model's `arch` choices
