"""The torch networks: a linear model, an MLP and a five-convolution CNN.

Every network takes normalised images (N, 1, 28, 28) float32 and returns logits (N, 10); the CNN also exposes
`features(x) -> (N, feature_dim)`, the output of its fully connected layer that the classifier reads.
"""

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

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x)))
