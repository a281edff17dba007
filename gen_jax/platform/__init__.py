"""Run plumbing: errors, devices and processes, peers, preemption, the workdir lock, checkpoints, run configs, metric logs, images, sweeps."""
