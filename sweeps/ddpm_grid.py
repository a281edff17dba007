"""A grid over learning rate and U-Net depth, each point with two seeds (12 trials).

    python launch.py --config=configs/ddpm.py --sweep=sweeps/ddpm_grid.py --workdir=runs/grid

model.ch_mult changes the network's shapes, so this needs the launcher; the seeds alone
could share one program instead (--config.sweep.vmap="{'seed': [0, 1]}", docs/sweeps.md).
"""

from gen_jax.platform.sweeps import spec


def get_sweep():
  return spec.product({'optim.lr': [1e-3, 3e-3], 'model.ch_mult': [(1, 2, 2), (1, 2, 2, 2)],
                       'seed': [0, 1]})
