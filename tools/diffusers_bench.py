"""Peer benchmark: Hugging Face diffusers (PyTorch, CPU) UNet2DModel, random weights.

The peer of `python -m experiments.benchmark`, which measures gen_jax on exactly this work
(`configs/bench_peer.py`). For two network sizes ("cifar10" = the DDPM paper's CIFAR-10 net,
"small" = an MNIST-size net) it measures
  (i)  training throughput: forward + epsilon-MSE loss on random timesteps (noise added
       with DDPMScheduler.add_noise) + backward + AdamW step;
  (ii) sampling throughput: DDIMScheduler (N steps) and DDPMScheduler (the first K of the
       T = 1000 ancestral steps, extrapolated linearly to 1000),
and prints ONE JSON object (also written to --out if given). Each phase records the CPU
other processes used meanwhile; the JSON says "contaminated": true when another process
took more than 0.1 core. Run it when nothing else uses the CPU, and compare ratios from one
window on one machine.

The work (random weights, fp32, --threads threads):
  cifar10 net: 32x32x3, channels (128, 256, 256, 256), 2 res blocks a level (3 on the way
    up), self-attention at 16x16 and in the middle block, one head, dropout 0.1,
    GroupNorm(32); 35,746,307 parameters; batch 16.
  small net: 28x28x1, channels (32, 64, 64), 2 res blocks a level, attention at 7x7 and in
    the middle, dropout 0.1; 1,623,169 parameters; batch 64.
  train step: noise, t ~ U{0..999}, linear-schedule add_noise, forward, MSE to the noise,
    backward, AdamW(lr 2e-4); --warmup warm-up steps, the median of --train_steps timed steps.
  sampling: DDIM --ddim_steps steps (eta 0) on the whole batch; the DDPM 1000-step ancestral
    chain timed on its first --ddpm_steps steps and extrapolated (the network's cost does not
    depend on t). "image-step" = one network evaluation of one image.

Run it in the PyTorch environment of tools/README.md:

    python tools/diffusers_bench.py              # the full protocol, ~2.5 min on 2 cores
    python tools/diffusers_bench.py --quick      # ~1 min on 2 cores
    python tools/diffusers_bench.py --models=small --small_batch=128 \\
        --train_steps=10 --ddim_steps=50 --ddpm_steps=100

torch and diffusers are imported only when the script runs, so `--help` works without them.
"""
import json
import os
import platform
import statistics
import sys
import time
import types

from absl import app
from absl import flags

flags.DEFINE_bool('quick', False, 'The same batches, few steps (warm-up 1, 3 timed train '
                  'steps, 10 DDIM, 10 DDPM); explicit flags below still override.')
flags.DEFINE_string('models', 'cifar10,small', 'Comma list of: cifar10, small.')
flags.DEFINE_integer('threads', 2, 'torch.set_num_threads.')
flags.DEFINE_integer('seed', 0, 'torch seed.')
flags.DEFINE_integer('cifar_batch', None, 'cifar10 net batch (default 16, quick: the same).')
flags.DEFINE_integer('small_batch', None, 'small net batch (default 64, quick: the same).')
flags.DEFINE_integer('cifar_base', 128, 'Base channels of the cifar10 net.')
flags.DEFINE_integer('small_base', 32, 'Base channels of the small net.')
flags.DEFINE_integer('small_size', 28, 'Small net resolution (28 or 32).')
flags.DEFINE_integer('small_layers', 2, 'Res blocks per level, small net.')
flags.DEFINE_integer('small_groups', 32, 'GroupNorm groups, small net.')
flags.DEFINE_integer('warmup', None, 'Training warm-up steps (default 2; quick: 1).')
flags.DEFINE_integer('train_steps', None, 'Timed training steps (default 10; quick: 3).')
flags.DEFINE_integer('ddim_steps', None, 'DDIM inference steps (default 50; quick: 10).')
flags.DEFINE_integer('ddpm_steps', None, 'How many of the T = 1000 DDPM ancestral steps to '
                     'run, then extrapolate to 1000 (default 100; quick: 10).')
flags.DEFINE_integer('sample_warmup', 3, 'Untimed network evaluations before sampling.')
flags.DEFINE_bool('no_train', False, 'Skip the training measurement.')
flags.DEFINE_bool('no_sample', False, 'Skip the sampling measurement.')
flags.DEFINE_float('lr', 2e-4, 'AdamW learning rate.')
flags.DEFINE_string('out', None, 'Also write the JSON here.')

_FLAG_NAMES = ('quick', 'models', 'threads', 'seed', 'cifar_batch', 'small_batch', 'cifar_base',
               'small_base', 'small_size', 'small_layers', 'small_groups', 'warmup',
               'train_steps', 'ddim_steps', 'ddpm_steps', 'sample_warmup', 'no_train',
               'no_sample', 'lr', 'out')


def parse_args():
  """The flags as one namespace, the --quick defaults filled in."""
  a = types.SimpleNamespace(**{name: flags.FLAGS[name].value for name in _FLAG_NAMES})
  q = a.quick

  def dflt(v, full, quick):
    return v if v is not None else (quick if q else full)

  a.cifar_batch = dflt(a.cifar_batch, 16, 16)
  a.small_batch = dflt(a.small_batch, 64, 64)
  a.warmup = dflt(a.warmup, 2, 1)
  a.train_steps = dflt(a.train_steps, 10, 3)
  a.ddim_steps = dflt(a.ddim_steps, 50, 10)
  a.ddpm_steps = dflt(a.ddpm_steps, 100, 10)
  return a


def model_configs(a):
  """Exact UNet2DModel kwargs. cifar10 mirrors google/ddpm-cifar10-32 (the diffusers port
    of Ho et al. 2020's CIFAR-10 model) plus dropout=0.1 as in the paper's training."""
  cifar = dict(
    sample_size=32, in_channels=3, out_channels=3,
    block_out_channels=tuple(a.cifar_base * m for m in (1, 2, 2, 2)),
    layers_per_block=2,
    # resolutions per level: 32, 16, 8, 4 -> self-attention only at 16x16 (+ mid block)
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None,  # None -> one head of width = channels (as in DDPM)
    dropout=0.1,
    time_embedding_type="positional", flip_sin_to_cos=False, freq_shift=1,
    downsample_padding=0, norm_num_groups=32, norm_eps=1e-6, act_fn="silu",
    mid_block_scale_factor=1,
  )
  s = a.small_size
  small = dict(
    sample_size=s, in_channels=1, out_channels=1,
    block_out_channels=tuple(a.small_base * m for m in (1, 2, 2)),
    layers_per_block=a.small_layers,
    # resolutions per level: s, s/2, s/4 (28,14,7 or 32,16,8): attention at the lowest (+ mid)
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    attention_head_dim=None,
    dropout=0.1,
    time_embedding_type="positional", flip_sin_to_cos=False, freq_shift=1,
    downsample_padding=1, norm_num_groups=a.small_groups, norm_eps=1e-6, act_fn="silu",
  )
  return {"cifar10": (cifar, a.cifar_batch), "small": (small, a.small_batch)}


def _summ(ts):
  return {
    "median_s": statistics.median(ts),
    "mean_s": statistics.fmean(ts),
    "min_s": min(ts),
    "max_s": max(ts),
    "all_s": [round(t, 5) for t in ts],
  }


def bench_train(torch, UNet2DModel, DDPMScheduler, cfg, batch, a):
  torch.manual_seed(a.seed)
  model = UNet2DModel(**cfg)
  model.train()
  sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
  opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
  c, s = cfg["in_channels"], cfg["sample_size"]
  x0 = torch.randn(batch, c, s, s).clamp_(-1, 1)  # stand-in for data in [-1, 1]

  def step():
    noise = torch.randn_like(x0)
    t = torch.randint(0, sched.config.num_train_timesteps, (batch,), dtype=torch.long)
    xt = sched.add_noise(x0, noise, t)
    pred = model(xt, t).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()  # .item() syncs; CPU anyway

  for _ in range(a.warmup):
    step()
  ts, losses = [], []
  for _ in range(a.train_steps):
    t0 = time.perf_counter()
    losses.append(step())
    ts.append(time.perf_counter() - t0)
  r = _summ(ts)
  r.update(batch=batch, warmup_steps=a.warmup, timed_steps=a.train_steps,
      images_per_s=batch / r["median_s"], last_loss=losses[-1],
      optimizer=f"AdamW(lr={a.lr}, torch defaults otherwise)",
      loss="mse(eps_pred, eps), t ~ U{0..999}, x_t = DDPMScheduler(linear).add_noise(x0, eps, t)",
      model_mode="train (dropout active)")
  return r


def bench_sample(torch, UNet2DModel, DDPMScheduler, DDIMScheduler, cfg, batch, a):
  torch.manual_seed(a.seed)
  model = UNet2DModel(**cfg).eval()
  c, s = cfg["in_channels"], cfg["sample_size"]
  out = {}
  with torch.inference_mode():
    # warm-up: a few network evals at batch size (allocator, oneDNN primitive caches);
    # with only 1 the first timed DDIM steps were seen ~2x slower in quick mode.
    x = torch.randn(batch, c, s, s)
    for _ in range(a.sample_warmup):
      model(x, torch.full((batch,), 999, dtype=torch.long))

    # DDIM, eta=0, scheduler defaults (timestep_spacing='leading', clip_sample=True,
    # set_alpha_to_one=True), as DDIMPipeline would run it.
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    ddim.set_timesteps(a.ddim_steps)
    x = torch.randn(batch, c, s, s)
    per = []
    t0 = time.perf_counter()
    for t in ddim.timesteps:
      t1 = time.perf_counter()
      eps = model(x, t).sample
      x = ddim.step(eps, t, x, eta=0.0).prev_sample
      per.append(time.perf_counter() - t1)
    dt = time.perf_counter() - t0
    n = len(ddim.timesteps)
    out["ddim"] = dict(
      steps=n, batch=batch, seconds_per_batch=dt, seconds_per_image=dt / batch,
      seconds_per_image_step=dt / (n * batch), image_steps_per_s=n * batch / dt,
      median_seconds_per_step=statistics.median(per), max_seconds_per_step=max(per),
      timesteps_first_last=[int(ddim.timesteps[0]), int(ddim.timesteps[-1])],
      scheduler_config=dict(beta_schedule="linear", timestep_spacing=ddim.config.timestep_spacing,
                 clip_sample=ddim.config.clip_sample, set_alpha_to_one=ddim.config.set_alpha_to_one,
                 steps_offset=ddim.config.steps_offset, eta=0.0),
      finite=bool(torch.isfinite(x).all()),
    )

    # DDPM ancestral sampling: the real T=1000 chain (set_timesteps(1000) => 999..0),
    # but only the first K steps are run and timed; the per-step cost does not depend on t,
    # so 1000-step time is EXTRAPOLATED linearly: dt * 1000 / K.
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    ddpm.set_timesteps(1000)
    k = min(a.ddpm_steps, len(ddpm.timesteps))
    x = torch.randn(batch, c, s, s)
    g = torch.Generator().manual_seed(a.seed)
    per = []
    t0 = time.perf_counter()
    for t in ddpm.timesteps[:k]:
      t1 = time.perf_counter()
      eps = model(x, t).sample
      x = ddpm.step(eps, t, x, generator=g).prev_sample
      per.append(time.perf_counter() - t1)
    dt = time.perf_counter() - t0
    per_step = dt / k
    out["ddpm"] = dict(
      steps_run=k, batch=batch, seconds_for_steps_run=dt,
      seconds_per_image_step=dt / (k * batch), image_steps_per_s=k * batch / dt,
      extrapolated_1000_steps_seconds_per_batch=per_step * 1000,
      extrapolated_1000_steps_seconds_per_image=per_step * 1000 / batch,
      median_seconds_per_step=statistics.median(per), max_seconds_per_step=max(per),
      extrapolation="linear: seconds_for_steps_run * 1000 / steps_run (first steps of the 999..0 chain)",
      scheduler_config=dict(beta_schedule="linear", variance_type=ddpm.config.variance_type,
                 clip_sample=ddpm.config.clip_sample),
      finite=bool(torch.isfinite(x).all()),
    )
  return out


class CpuMonitor:
  """Measures how much CPU *other* processes used during a phase (from /proc/stat minus this
    process's own utime+stime). foreign_cpu_cores > ~0.1 means the timings are contaminated by
    something else running on the machine."""

  def __init__(self):
    self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

  @staticmethod
  def _busy():
    try:
      with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
      return sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # minus idle, iowait
    except (OSError, ValueError):
      return None

  @staticmethod
  def _own():
    try:
      with open("/proc/self/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
      return int(v[11]) + int(v[12])  # utime, stime (all threads)
    except (OSError, ValueError, IndexError):
      return None

  def report(self):
    dt = time.perf_counter() - self.t0
    busy, own = self._busy(), self._own()
    r = {"wall_s": round(dt, 3)}
    if None not in (busy, own, self.busy0, self.own0) and dt > 0:
      r["own_cpu_cores"] = round((own - self.own0) / self.hz / dt, 3)
      r["foreign_cpu_cores"] = round(max(0, (busy - self.busy0) - (own - self.own0)) / self.hz / dt, 3)
    try:
      with open("/proc/loadavg") as f:
        r["loadavg_1m_end"] = float(f.read().split()[0])
    except (OSError, ValueError):
      pass
    return r


def machine_info(torch):
  cpu = None
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  info = dict(nproc=os.cpu_count(), cpu_model=cpu, platform=platform.platform(),
        python=sys.version.split()[0], torch=torch.__version__,
        torch_num_threads=torch.get_num_threads(),
        torch_num_interop_threads=torch.get_num_interop_threads(),
        mkldnn=torch.backends.mkldnn.is_available(),
        cpu_capability=getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)())
  try:
    with open("/proc/meminfo") as f:
      info["mem_total_kb"] = int(f.readline().split()[1])
  except (OSError, ValueError, IndexError):
    pass
  return info


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  a = parse_args()
  t_start = time.perf_counter()
  import torch
  torch.set_num_threads(a.threads)
  import diffusers
  from diffusers import UNet2DModel, DDPMScheduler, DDIMScheduler

  cfgs = model_configs(a)
  result = dict(
    benchmark="diffusers UNet2DModel peer benchmark (CPU, random weights)",
    date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    mode="quick" if a.quick else "full",
    args=vars(a),
    versions=dict(diffusers=diffusers.__version__, torch=torch.__version__),
    machine=machine_info(torch),
    models={},
  )
  for name in [m.strip() for m in a.models.split(",") if m.strip()]:
    if name not in cfgs:
      raise SystemExit(f"unknown model {name!r}; choose from {list(cfgs)}")
    cfg, batch = cfgs[name]
    m = UNet2DModel(**cfg)
    nparams = sum(p.numel() for p in m.parameters())
    del m
    entry = dict(unet2d_config={k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
          params=nparams, params_millions=round(nparams / 1e6, 3), batch=batch)
    print(f"[{name}] params={nparams:,} batch={batch}", file=sys.stderr, flush=True)
    if not a.no_train:
      t0 = time.perf_counter()
      mon = CpuMonitor()
      entry["train"] = bench_train(torch, UNet2DModel, DDPMScheduler, cfg, batch, a)
      entry["train"]["cpu_monitor"] = mon.report()
      print(f"[{name}] train median {entry['train']['median_s']:.3f}s/step "
         f"({entry['train']['images_per_s']:.1f} img/s) [{time.perf_counter()-t0:.0f}s]",
         file=sys.stderr, flush=True)
    if not a.no_sample:
      t0 = time.perf_counter()
      mon = CpuMonitor()
      entry["sample"] = bench_sample(torch, UNet2DModel, DDPMScheduler, DDIMScheduler, cfg, batch, a)
      entry["sample"]["cpu_monitor"] = mon.report()
      print(f"[{name}] ddim {entry['sample']['ddim']['seconds_per_batch']:.2f}s/batch, "
         f"{entry['sample']['ddim']['seconds_per_image_step']*1e3:.2f} ms/image-step; "
         f"ddpm {entry['sample']['ddpm']['seconds_per_image_step']*1e3:.2f} ms/image-step, "
         f"1000-step extrap {entry['sample']['ddpm']['extrapolated_1000_steps_seconds_per_batch']:.0f}s/batch "
         f"[{time.perf_counter()-t0:.0f}s]", file=sys.stderr, flush=True)
    result["models"][name] = entry
  result["total_wall_s"] = time.perf_counter() - t_start
  fc = [ph["cpu_monitor"].get("foreign_cpu_cores", 0) for e in result["models"].values()
     for ph in (e.get("train"), e.get("sample")) if ph]
  result["max_foreign_cpu_cores"] = max(fc) if fc else None
  result["contaminated"] = bool(fc) and max(fc) > 0.1
  if result["contaminated"]:
    print(f"WARNING: other processes used up to {max(fc):.2f} cores during timing; "
       "rerun on a quiet machine", file=sys.stderr)
  s = json.dumps(result, indent=2)
  print(s)
  if a.out:
    with open(a.out, "w") as f:
      f.write(s + "\n")


if __name__ == "__main__":
  app.run(main)
