"""Learning-rate sweep of the digits DDPM (configs/ddpm.py): four trials, one per lr.

    python launch.py --config=configs/ddpm.py --sweep=sweeps/ddpm_lr.py --workdir=runs/lr

Each trial is `launch.py --config=configs/ddpm.py --config.optim.lr=LR` in runs/lr/lr=LR;
the summary (runs/lr/sweep.md) compares their final losses.
"""


def get_sweep():
  return [{'optim.lr': lr} for lr in (3e-4, 1e-3, 3e-3, 1e-2)]
