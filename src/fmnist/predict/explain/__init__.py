"""Why a model decided: attribution maps over the 28x28 pixels, for all five models.

    from fmnist.predict.explain import attribute
    result = attribute.explain(model, images)      # uint8 (N, 28, 28); the default method, each predicted class
    result.maps                                    # float32 (N, 28, 28): positive = evidence for result.targets

pixel.py: each model as a torch module on pixels (normalisation and test-time augmentation included; the scratch
MLP's own backward pass as an autograd function); methods.py: the Captum methods; attribute.py: maps, templates,
a run's gallery; evidence.py: the deletion and model-randomisation checks. This file names the methods without
importing torch or Captum, so the command line's --help stays light.
"""

METHODS = ("integrated-gradients", "saliency", "smoothgrad", "occlusion", "grad-cam")
CNN_ONLY = ("grad-cam",)  # needs a CNN: the cnn itself or the hybrid's
# Chosen on bench/bench_explain.py's measurements (deletion and model randomisation; README "Attributions").
DEFAULT_METHOD = "smoothgrad"
