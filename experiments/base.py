"""What every family that trains one network with one loss shares (diffusion, VAE)."""

import jax
import jax.numpy as jnp

from gen_jax import data
from gen_jax import optim
from gen_jax.train_state import TrainState, ema_update, gradient_update, trial_hparams


class SingleNetworkExperiment:
  """The state, batches and train step of one network under one pure loss.

  A subclass sets `config`, `mesh`, `_train_data` (`data.load_train_data`), `optimizer`,
  `lr_schedule` and `loss_fn(params, batch, rng) -> (loss, metrics)`, and implements
  `init_params(rng)`.
  """

  # Config fields that may differ between the vmapped trials of one run (gen_jax.vmap_trials):
  # numeric, and read from `trial_hparams(state)` in the step rather than baked into it.
  VMAP_FIELDS = ('optim.lr', 'optim.ema_decay')

  def init_params(self, rng):
    raise NotImplementedError

  def init_state(self, rng) -> TrainState:
    params = self.init_params(jax.random.fold_in(rng, 0))
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, params=params,
                      opt_state=self.optimizer.init(params), ema_params=params)

  def train_batches(self) -> data.BatchSource:
    return data.train_source(self._train_data, self.config)

  def train_step(self, state: TrainState, batch, rng):
    """Per device: one `gradient_update`, the EMA, and the learning rate as a metric."""
    hparams = trial_hparams(state)
    optimizer, lr_schedule = self.optimizer, self.lr_schedule
    if 'optim.lr' in hparams:  # a vmapped trial: its own peak rate, the same schedule
      optimizer, lr_schedule = optim.make_optimizer(
          self.config.optim, self.config.training.num_steps, lr=hparams['optim.lr'])
    params, opt_state, metrics, _ = gradient_update(
        self.loss_fn, optimizer, state.params, state.opt_state, batch, rng)
    ema_decay = hparams.get('optim.ema_decay', self.config.optim.ema_decay)
    ema = ema_update(state.ema_params, params, ema_decay, state.step)
    metrics['lr'] = lr_schedule(state.step)
    return state.replace(params=params, opt_state=opt_state, ema_params=ema), metrics
