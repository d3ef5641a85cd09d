"""The torch networks: a linear model, an MLP and a five-convolution CNN.

Every network takes normalised images (N, 1, 28, 28) float32 and returns logits (N, 10); the CNN also exposes
`features(x) -> (N, feature_dim)`, the output of its fully connected layer that the classifier reads.
"""

import torch
from torch import nn

from fmnist.data import NUM_CLASSES, SIDE

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


def conv_block(c_in, c_out):
    """3x3 convolution (same padding, no bias: batch norm supplies it), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CNN(nn.Module):
    """Five conv-BN-ReLU layers with max-pooling, dropout, a fully connected feature layer, then the classifier.

    Layout (28 -> 14 -> 7 -> 3 pixels): conv1, pool, conv2, conv3, pool, conv4, conv5, pool, dropout,
    fc -> features (ReLU), dropout, classifier. Pooling right after the first convolution keeps the costly
    layers at 14x14 and below: on a CPU the FLOPs per image set the epoch time.
    """

    def __init__(self, widths=(32, 64, 64, 128, 128), feature_dim=256, dropout=0.3):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths: expected 5 convolution widths, got {len(widths)}")
        c1, c2, c3, c4, c5 = widths
        pool = nn.MaxPool2d(2)
        self.body = nn.Sequential(
            conv_block(1, c1),
            pool,
            conv_block(c1, c2),
            conv_block(c2, c3),
            pool,
            conv_block(c3, c4),
            conv_block(c4, c5),
            pool,
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c5 * 3 * 3, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, NUM_CLASSES)

    def features(self, x):
        """(N, 1, 28, 28) -> (N, feature_dim): the image's feature vector, non-negative (after ReLU)."""
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x)))


def conv_macs(widths):
    """Multiply-accumulates per image of the five convolutions (the bulk of the CNN's cost)."""
    sides = (28, 14, 14, 7, 7)
    c_in, total = 1, 0
    for c_out, side in zip(widths, sides, strict=True):
        total += 9 * c_in * c_out * side * side
        c_in = c_out
    return total


def to_images(x):
    """float32 (N, 784) or (N, 28, 28) -> (N, 1, 28, 28), a view where possible."""
    return torch.as_tensor(x).reshape(-1, 1, SIDE, SIDE)
