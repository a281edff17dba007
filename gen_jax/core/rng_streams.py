"""The numbers folded into a key to start each random stream outside the train step.

Training keys are fold_in(PRNGKey(config.seed), step) (gen_jax.core.trainer); every other draw
starts from one of the streams below, so no two purposes share keys by accident and a
reader finds them all here. Changing a number changes the figures drawn with it.
"""

# Folded into fold_in(state.rng, step): draws tied to a training step's state.
SAMPLE_GRID = 1  # `write_samples`' grids, strips and .npz files
FAMILY_EVAL = 2  # a family's own in-training samples (ring8 mode coverage)
STANDING_STATS = 3  # the GAN's standing BatchNorm statistics

# Folded into PRNGKey(eval.seed): evaluation, the same at every step.
EVALUATION = 0xE7A1  # the evaluation program's samples (and its numpy KID subsets)
VLB = 0x0B0D  # the diffusion bound's timesteps and noise
# The VAE's importance samples. The same number as EVALUATION (so the figures stay as
# they were); the two derive their keys differently (per example vs per batch).
VAE_BOUNDS = 0xE7A1

# Folded into PRNGKey(config.seed): figures that show the same draws at every step.
VAE_PRIOR = 0x0B10B  # the VAE's prior grid (decoded z per sample number)
