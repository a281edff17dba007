"""What every family that trains one network with one loss shares (diffusion, VAE,
classifier): an implementation of `gen_jax.core.family.Experiment`'s training hooks."""

import jax
import jax.numpy as jnp

from gen_jax.core import family
from gen_jax.core import optim
from gen_jax.core.train_state import TrainState, ema_update, gradient_update
from gen_jax.data import arrays
from gen_jax.data import datasets


class SingleNetworkExperiment(family.Experiment):
  """The state, batches and train step of one network under one pure loss.

  A subclass sets `config`, `mesh`, `_train_data` (`datasets.load_train_data`) and
  `loss_fn(params, batch, rng) -> (loss, metrics)`, calls `build_optimizer()`, and
  implements `init_params(rng)` and `write_samples`.
  """

  # The peak rate and the EMA decay reach the step as `hparams` (gen_jax.core.family).
  VMAP_FIELDS = ('optim.lr', 'optim.ema_decay')

  def build_optimizer(self) -> None:
    """`self.optimizer` from the `optim` block (its update takes the peak rate)."""
    optim.check_rate('optim.lr', self.config.optim.lr)
    self.optimizer = optim.make_optimizer(self.config.optim, self.config.training.num_steps)

  def init_params(self, rng):
    raise NotImplementedError

  def init_state(self, rng) -> TrainState:
    params = self.init_params(jax.random.fold_in(rng, 0))
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, params=params,
                      opt_state=self.optimizer.init(params), ema_params=params)

  def train_batches(self) -> arrays.BatchSource:
    return datasets.train_source(self._train_data, self.config)

  def train_step(self, state: TrainState, batch, rng, hparams):
    """Per device: one `gradient_update`, the EMA, and the learning rate as a metric."""
    lr = hparams['optim.lr']
    params, opt_state, metrics, _ = gradient_update(
        self.loss_fn, self.optimizer, state.params, state.opt_state, batch, rng, peak_lr=lr)
    ema = ema_update(state.ema_params, params, hparams['optim.ema_decay'], state.step)
    metrics['lr'] = optim.learning_rate_schedule(
        self.config.optim, self.config.training.num_steps, lr)(state.step)
    return state.replace(params=params, opt_state=opt_state, ema_params=ema), metrics
