"""A CNN classifier on Fashion-MNIST at 28x28: the feature extractor of `--mode=eval` for
Fashion-MNIST runs (their eval.classifier_workdir).

    python launch.py --config=configs/classifier_fashion.py --workdir=runs/classifier_fashion

Reads tfds' prepared fashion_mnist when there is one, else the IDX files of Debian's
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or of data.data_dir. Trains on
'train' (60000 images) and reports held-out accuracy on 'test' (10000).
"""

from configs import classifier_mnist


def get_config():
  # MNIST's recipe (28x28 grey, 10 classes, the same split sizes) on Fashion-MNIST.
  config = classifier_mnist.get_config()
  config.data.dataset = 'fashion_mnist'
  return config
