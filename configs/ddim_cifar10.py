"""Song et al. 2021 (DDIM), CIFAR-10: the DDPM CIFAR-10 model sampled with DDIM, eta = 0.

Train with configs/ddpm_cifar10.py (DDIM changes only sampling), or import the paper's
weights (google/ddpm-cifar10-32, docs/checkpoints.md; the DDIM paper sampled
that same model), then evaluate the checkpoint at each step count, each in its own workdir
(an evaluation writes WORKDIR/eval/<checkpoint step>.json; hard links cost no space):

    for n in 10 20 50 100; do
      cp -al runs/ddpm_cifar10 runs/ddim${n}_cifar10
      python launch.py --config=configs/ddim_cifar10.py --workdir=runs/ddim${n}_cifar10 \
          --mode=eval --config.sampling.num_steps=$n
    done

Paper (Table 1, eta = 0, 50k samples): FID 13.36 / 6.84 / 4.67 / 4.16 at 10 / 20 / 50 / 100
steps. Its sampler does not clip the predicted x0 (clip_x0=False here). Its CIFAR-10
timesteps are quadratic, floor(linspace(0, sqrt(0.8 T), S)^2), repeats included (a repeated
timestep is a no-op step) at S = 50 and 100; gen_jax's 'quad' spacing rounds and refuses
repeats, so this config keeps 'uniform' (--config.sampling.spacing=quad: the quadratic
sequence at 10 and 20 steps, a few timesteps off by one).
"""

from configs import ddpm_cifar10


def get_config():
  config = ddpm_cifar10.get_config()
  config.sampling.sampler = 'ddim'
  config.sampling.num_steps = 50
  config.sampling.eta = 0.0
  config.sampling.spacing = 'uniform'
  config.sampling.clip_x0 = False  # the paper's sampler does not clip x0
  # The bound is the DDPM row's (configs/ddpm_cifar10.py computes it exactly); here a
  # 10-stratum estimate keeps each DDIM evaluation from repeating 10^7 network calls.
  config.eval.vlb_strata = 10
  config.eval.paper.source = ('Song et al. 2021, Denoising Diffusion Implicit Models, '
                              'Table 1 (CIFAR-10, eta = 0)')
  config.eval.paper.results = tuple(
      ('fid', fid, f'sampling.num_steps={steps}')
      for steps, fid in ((10, 13.36), (20, 6.84), (50, 4.67), (100, 4.16)))
  return config
