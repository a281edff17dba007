"""The gan family's config schema: the shared blocks (experiments/schema.py) plus
the GAN family's model and game blocks, each field with its default and a one-line comment.
"""

import ml_collections

from experiments import schema as shared

# Fields a resumed run may change besides the shared ones (gen_jax.platform.run_config):
# each player's learning rate.
RESUMABLE_FIELDS = ('optim.g_lr', 'optim.d_lr')

# Renamed fields, old -> new (one name per concept: every rate and EMA under optim.*). A
# command line with an old name is refused naming the new one; a config.json written under
# the old names reads as if written under the new ones.
RENAMED = {
    'gan.g_lr': 'optim.g_lr',
    'gan.d_lr': 'optim.d_lr',
    'gan.ema_decay': 'optim.ema_decay',
    'gan.ema_start': 'optim.ema_start',
}
# Fields a config.json written under the old names loses when it is renamed: the unused
# optim.lr of a GAN from before the players' rates moved to optim.g_lr / optim.d_lr.
DROPPED_WITH_RENAMES = ('optim.lr',)

# Fields added after runs were recorded without them, at the value such a run behaved as:
# none (every GAN field was there, or came with a rename).
HISTORICAL_DEFAULTS = {}


def get_schema() -> ml_collections.ConfigDict:
  """The shared blocks plus the GAN family's model and game blocks."""
  config = shared.get_schema()
  config.family = 'gan'  # the family that runs this config (experiments/gan/).
  del config.optim.lr  # each player has its own rate: optim.g_lr, optim.d_lr.
  config.optim.g_lr = 2e-4  # generator learning rate (TTUR: may differ from d_lr).
  config.optim.d_lr = 2e-4  # discriminator learning rate.
  config.optim.b1 = 0.5  # Adam beta1 of both players (0.5 as in the DCGAN paper).
  config.optim.warmup_steps = 0  # linear warmup of both players' rates.
  config.optim.grad_clip = 0.0  # global-norm clipping of each player's gradient (0: off).
  config.optim.ema_decay = 0.999  # EMA of G's weights, used for samples (0: the live G).
  config.optim.ema_start = 0  # G's EMA copies the live G until this step (BigGAN: 1000-20000).

  config.model = ml_collections.ConfigDict()
  # 'dcgan' (convolutional, images), 'biggan' (ResNet, configs/biggan*.py) or 'mlp' (ring8).
  config.model.arch = 'dcgan'
  config.model.z_dim = 64  # latent code size.
  config.model.g_ch = 32  # G channels at half resolution; doubled at every coarser level.
  config.model.d_ch = 32  # D channels of its first conv; doubled at every halving.
  config.model.hidden = 128  # mlp: width of each hidden layer of both players.
  config.model.layers = 3  # mlp: hidden layers of each player.
  config.model.embed_dim = 16  # conditional G: class embedding concatenated to z.
  config.model.bn_momentum = 0.9  # decay of G's BatchNorm running statistics (sampling).
  config.model.init = 'dcgan'  # kernel init: 'dcgan' N(0,0.02), 'orthogonal' (BigGAN), 'lecun'.
  config.model.d_norm = 'none'  # dcgan D: 'batch' (batch statistics after conv 2..k) or 'none'.
  config.model.bn_epsilon = 1e-5  # biggan: G's BatchNorm epsilon.
  config.model.g_ch_mults = (4, 4, 4)  # biggan: G block i has g_ch * g_ch_mults[i] channels.
  config.model.d_ch_mults = (4, 4, 4, 4)  # biggan: D block i has d_ch * d_ch_mults[i] channels.
  config.model.d_num_down = 2  # biggan: the first d_num_down D blocks halve the resolution.
  config.model.shared_dim = 128  # biggan: shared class embedding width (0: per-layer embeddings).
  config.model.hierarchical = True  # biggan: z split over G's input and each block's BatchNorms.
  config.model.g_attn = 0  # biggan: G self-attention after the block of this side (0: none).
  config.model.d_attn = 0  # biggan: D self-attention after the block of this side (0: none).

  config.gan = ml_collections.ConfigDict()
  config.gan.loss = 'non_saturating'  # 'non_saturating', 'minimax' (saturating) or 'hinge'.
  config.gan.d_steps = 1  # discriminator updates (fresh z each) before each G update.
  config.gan.conditional = False  # class-conditional G (embedding) and D (projection).
  # Unconditional G: K > 0 feeds it a uniform random code of K values through its class
  # embedding (no labels; D never sees the code), so it need not draw between modes.
  config.gan.latent_classes = 0
  # Unconditional self-conditioned GAN: K > 0 conditions both players on k-means clusters
  # of the training images (no labels); samples draw a cluster by its size.
  config.gan.cluster_classes = 0
  config.gan.spectral_norm = False  # spectral normalisation of every D layer.
  config.gan.r1_gamma = 0.0  # R1 penalty (gamma/2) E||grad_x D(x)||^2 on real data (0: off).
  config.gan.ortho_reg = 0.0  # beta of BigGAN's ||W^T W * (1 - I)||_F^2 on G's weights (0: off).
  config.gan.truncation = 0.0  # sampling: resample |z_i| above this threshold (0: off).
  # G's BatchNorm statistics for samples: 'running' (averages kept in training) or
  # 'standing' (recomputed from gan.standing_batches batches of the sampled, EMA, G).
  config.gan.sample_bn_stats = 'running'
  config.gan.standing_batches = 16  # 'standing': batches of training.batch_size latents.
  config.gan.interp_steps = 10  # images per latent-interpolation strip.
  config.gan.interp_rows = 8  # strips (pairs of end points) per interpolation PNG.

  config.sampling.num_samples = 64  # samples per grid / npz / ring8 evaluation.
  return config
