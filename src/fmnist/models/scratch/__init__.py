"""A multi-layer perceptron written from scratch in NumPy: maths, network, optimizers, classifier.

Importing this package never imports torch.
"""
