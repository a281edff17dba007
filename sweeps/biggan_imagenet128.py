"""The full BigGAN 128x128 ImageNet run (configs/biggan_imagenet128.py) as one SkyPilot trial
on a TPU pod slice; see docs/families/gan.md:

    python launch.py --config=configs/biggan_imagenet128.py --sweep=sweeps/biggan_imagenet128.py \
        --workdir=runs/biggan128 --backend=skypilot --config.sweep.bucket=gs://MY_BUCKET/gen_jax \
        --config.sweep.accelerators=tpu-v5e-64 --config.data.data_dir=gs://MY_BUCKET/tfds
"""


def get_sweep():
  return [{'seed': 0}]
