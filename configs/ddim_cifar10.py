"""Song et al. 2021 (DDIM), CIFAR-10: the DDPM CIFAR-10 model sampled with DDIM, eta = 0.

Train with configs/ddpm_cifar10.py (DDIM changes only sampling), then evaluate the same
workdir at each step count:

    for n in 10 20 50 100; do
      python launch.py --config=configs/ddim_cifar10.py --workdir=runs/ddpm_cifar10 \
          --mode=eval --config.sampling.num_steps=$n
    done

Paper (Table 1, eta = 0, 50k samples): FID 13.36 / 6.84 / 4.67 / 4.16 at 10 / 20 / 50 / 100
steps.
"""

from configs import ddpm_cifar10


def get_config():
  config = ddpm_cifar10.get_config()
  config.sampling.sampler = 'ddim'
  config.sampling.num_steps = 50
  config.sampling.eta = 0.0
  config.sampling.spacing = 'uniform'
  config.eval.paper.source = ('Song et al. 2021, Denoising Diffusion Implicit Models, '
                              'Table 1 (CIFAR-10, eta = 0)')
  config.eval.paper.results = tuple(
      ('fid', fid, f'sampling.num_steps={steps}')
      for steps, fid in ((10, 13.36), (20, 6.84), (50, 4.67), (100, 4.16)))
  return config
