#!/bin/sh
# Make sure the four Fashion-MNIST files are findable: already there, else Debian's package (as root with
# apt), else `fmnist data download`, else say how to provide them.
FMNIST=${FMNIST:-fmnist}
"$FMNIST" data info >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && [ -z "$FMNIST_DATA_DIR" ]; then
    echo "installing the Debian package dataset-fashion-mnist" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
        && "$FMNIST" data info >/dev/null 2>&1 && exit 0
fi
if [ -z "$FMNIST_DATA_DIR" ]; then
    echo "downloading Fashion-MNIST into ~/.cache/fmnist" >&2
    "$FMNIST" data download && "$FMNIST" data info >/dev/null 2>&1 && exit 0
fi
"$FMNIST" data info >/dev/null  # prints why the data could not be used
cat >&2 <<'MSG'
Fashion-MNIST is not available. Provide the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), gzip or not, in a folder and set FMNIST_DATA_DIR to it,
or install the Debian package dataset-fashion-mnist.
MSG
exit 1
