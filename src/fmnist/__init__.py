"""fmnist: train, compare, explain and serve Fashion-MNIST classifiers on a CPU."""

__version__ = "0.2.0"
