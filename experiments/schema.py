"""The config blocks every family shares (data, training, optim, parallel, sampling, sweep,
eval), and what the shared blocks carry across versions.

A family's schema (experiments/<family>/schema.py) starts from `get_schema()` and adds
its own blocks; a run config (configs/*.py) starts from its family's schema and overrides
values. Every field has a one-line comment, rendered into docs/configuration.md by
tools/config_reference.py. The fields of the shared blocks a resumed run may change are
the library's (`gen_jax.platform.run_config.MUTABLE`).
"""

import ml_collections

# Fields added after runs were recorded without them: the value such a run behaved as (its
# config.json is completed with it when read back, `experiments.upgrade_config`).
HISTORICAL_DEFAULTS = {
    'data.on_bad_image': 'fail', 'data.loader': 'memory', 'data.crop': 'center',
    'data.max_memory_bytes': 4 * 2**30, 'data.labels_from_subfolders': False,
    'data.num_workers': 0, 'data.prefetch_batches': 4, 'data.resize': 'bilinear',
    'parallel.peer_timeout_s': 30, 'parallel.init_timeout_s': 300, 'eval.samples_file': '',
    'eval.image_size': 0, 'training.eval_every': 0, 'sweep.vmap_trial_devices': 0,
}

# Shared fields renamed since runs were recorded (old -> new): none yet.
RENAMED = {}


def get_schema() -> ml_collections.ConfigDict:
  """Returns the blocks shared by all families (`family` is set by the family's schema)."""
  config = ml_collections.ConfigDict()
  config.family = ''  # which family runs this config, e.g. 'diffusion' (set by its schema).
  config.seed = 0  # the one base seed; every random choice is fold_in'ed from it.

  config.data = ml_collections.ConfigDict()
  # 'digits' (embedded, scikit-learn), 'folder:PATH' (PNG / JPEG files) or any tfds name.
  config.data.dataset = 'digits'
  config.data.image_size = 16  # images are resized to (image_size, image_size).
  config.data.data_dir = ''  # tfds data_dir; '' means tfds' default (~/tensorflow_datasets).
  config.data.train_split = 'train'  # split used for training.
  config.data.eval_split = 'test'  # held-out split (digits: the last 297 of 1797 images).
  config.data.random_flip = False  # random horizontal flips of training images.
  # 'memory' (whole split as float32 arrays), 'grain' (record by record, worker processes;
  # tfds datasets must be ArrayRecord) or 'auto' (grain above data.max_memory_bytes).
  config.data.loader = 'auto'
  config.data.max_memory_bytes = 4 * 2**30  # auto: the float32 split size that picks grain.
  config.data.num_workers = 0  # grain: worker processes decoding images (0: threads only).
  config.data.prefetch_batches = 4  # grain: batches prepared ahead per reader (its threads).
  config.data.labels_from_subfolders = False  # folder: class = first-level subfolder name.
  config.data.on_bad_image = 'fail'  # undecodable image: 'fail' or 'skip' (file named either way).
  # Images: shorter side resized to image_size by 'bilinear' (antialiased) or 'area' (box).
  config.data.resize = 'bilinear'
  config.data.crop = 'center'  # square crop along the longer side: 'center' or 'random' (grain).

  config.training = ml_collections.ConfigDict()
  config.training.batch_size = 64  # global batch over all devices and hosts.
  config.training.num_steps = 2000  # total optimizer steps.
  config.training.log_every = 50  # steps between metric lines (metrics.jsonl, TensorBoard).
  config.training.checkpoint_every = 500  # steps between checkpoints.
  config.training.sample_every = 1000  # steps between sample grids (0 disables).
  config.training.eval_every = 0  # steps between in-training evaluations (0 disables).
  config.training.keep_checkpoints = 3  # how many checkpoints to keep.
  config.training.async_checkpoints = True  # save checkpoints in a background thread.
  # Persistent XLA compilation cache, so a restarted run skips recompiling: 'auto'
  # ($JAX_COMPILATION_CACHE_DIR, else ~/.cache/gen_jax/jax_compilation_cache), a directory, or '' (off).
  config.training.compilation_cache = 'auto'

  config.optim = ml_collections.ConfigDict()
  config.optim.optimizer = 'adam'  # 'adam' or 'adamw'.
  config.optim.lr = 2e-4  # peak learning rate.
  config.optim.warmup_steps = 100  # linear warmup from 0 to lr.
  config.optim.decay = 'constant'  # after warmup: 'constant' or 'cosine' (to 0 at num_steps).
  config.optim.b1 = 0.9  # Adam beta1.
  config.optim.b2 = 0.999  # Adam beta2.
  config.optim.eps = 1e-8  # Adam epsilon.
  config.optim.weight_decay = 0.0  # AdamW decoupled weight decay.
  config.optim.grad_clip = 1.0  # global-norm gradient clipping (0 disables).
  config.optim.ema_decay = 0.999  # EMA of parameters used for sampling (0 disables EMA).

  config.parallel = ml_collections.ConfigDict()
  # CPU only: devices to split each batch over (0: one per core, dividing the batches).
  config.parallel.cpu_devices = 0
  # CPU only: launch.py re-executes itself with tcmalloc preloaded when the system has it
  # (gen_jax/platform/host_memory.py: training 1.25x faster). False: keep the system's malloc.
  config.parallel.cpu_tcmalloc = True
  # Multi-process runs: seconds without a peer's heartbeat before the others stop with
  # one line and the restartable exit code (gen_jax/platform/peers.py).
  config.parallel.peer_timeout_s = 30
  # Multi-process runs: seconds to wait at startup for every process to join.
  config.parallel.init_timeout_s = 300

  config.sampling = ml_collections.ConfigDict()
  config.sampling.num_samples = 64  # images per sample grid / `--mode=sample` run.

  # Sweeps (README, Sweeps): `launch.py --sweep=FILE` runs one trial per override dict of
  # FILE's get_sweep(); `vmap` trains N small trials in one compiled program instead.
  config.sweep = ml_collections.ConfigDict()
  config.sweep.parallel = 1  # local backend: trials running at once (each its own process).
  config.sweep.accelerators = 'tpu-v5e-8'  # skypilot: per node, e.g. 'tpu-v5e-8', 'A100:8'.
  config.sweep.num_nodes = 1  # skypilot: nodes per trial (a TPU pod slice is one node).
  config.sweep.use_spot = True  # skypilot: spot VMs; preempted trials restart and resume.
  config.sweep.bucket = ''  # skypilot: trial workdirs are BUCKET/<sweep>/<trial>; gs://b/runs.
  config.sweep.infra = ''  # skypilot: where to run, e.g. 'gcp', 'gcp/us-west4' ('': any).
  config.sweep.tpu_runtime = ''  # skypilot: TPU VM software version ('': SkyPilot's default).
  config.sweep.setup = ''  # skypilot: node setup command ('': pip install -e ".[tpu]" or ".[gpu]").
  # field -> N values, e.g. {'seed': [0, 1], 'optim': {'lr': [1e-3, 3e-3]}}: N vmapped trials.
  config.sweep.vmap = ml_collections.ConfigDict()
  config.sweep.vmap_trial_devices = 0  # vmap: devices the trials are split over (0: automatic).

  # `--mode=eval` and in-training evaluation (see experiments/evaluation.py).
  config.eval = ml_collections.ConfigDict()
  config.eval.num_samples = 1024  # samples --mode=eval generates and scores.
  config.eval.num_samples_train = 0  # samples scored every training.eval_every steps (0: none).
  # Samples per generation call (divides eval.num_samples), and held-out examples per call
  # of a family's own metrics (the diffusion bound, the VAE's ELBO and IWAE).
  config.eval.batch_size = 256
  config.eval.held_out_examples = 0  # held-out examples those metrics use (0: data.eval_split).
  config.eval.seed = 0  # key of the evaluation's samples, KID subsets and held-out bounds.
  config.eval.use_ema = True  # sample with the EMA parameters (False: the raw ones).
  config.eval.split = 'train'  # real split the samples are compared with (the reference).
  config.eval.reference_examples = 0  # real examples of eval.split used (0: all of them).
  # Side the samples and the real data are scored at (0: data.image_size); samples of another
  # size are resized as the real data is (bilinear), e.g. an 8px model by a 16px classifier.
  config.eval.image_size = 0
  config.eval.samples_file = ''  # --mode=eval scores this .npz's samples instead of a checkpoint's.
  config.eval.floor = True  # also score data.eval_split against eval.split: the real-data floor.
  config.eval.feature_extractor = 'classifier'  # 'classifier' (a gen_jax run) or 'inception'.
  config.eval.classifier_workdir = 'runs/classifier_digits'  # classifier run (configs/classifier_*.py).
  config.eval.inception_weights = ''  # pytorch-fid's pt_inception-2015-12-05-6726825d.pth.
  config.eval.cache_dir = ''  # real-data features ('': DATA_DIR/gen_jax_reference or ~/.cache).
  config.eval.kid_subsets = 100  # KID: subsets averaged (its standard error is over these).
  config.eval.kid_subset_size = 1000  # KID: samples per subset (capped at the smaller set).
  config.eval.pr_neighbours = 3  # precision/recall: k of the k-NN manifold radii.
  config.eval.is_splits = 10  # Inception Score: splits (mean and std over them).
  # What the paper this config reproduces reported, for experiments/ledger.py: results
  # are (metric, value, condition) with condition '' or 'field=value' (e.g. the steps).
  config.eval.paper = ml_collections.ConfigDict({'source': '', 'results': ()})
  return config
