"""A CNN classifier on Fashion-MNIST at 28x28: the feature extractor of `--mode=eval` for
Fashion-MNIST runs (their eval.classifier_workdir).

    python launch.py --config=configs/classifier_fashion.py --workdir=runs/classifier_fashion

Reads tfds' prepared fashion_mnist when there is one, else the IDX files of Debian's
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or of data.data_dir. Trains on
'train' (60000 images) and reports held-out accuracy on 'test' (10000).
"""

from configs import classifier_digits


def get_config():
  config = classifier_digits.get_classifier_config()
  config.data.dataset = 'fashion_mnist'
  config.data.image_size = 28
  config.training.batch_size = 128
  config.training.num_steps = 5000
  config.training.log_every = 100
  config.training.checkpoint_every = 1000
  config.training.sample_every = 5000
  config.training.eval_every = 1000
  config.optim.lr = 1e-3
  config.optim.decay = 'cosine'
  config.optim.ema_decay = 0.999
  return config
