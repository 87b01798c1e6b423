"""Step kernels for the local executor: how one starts and exits, the warm pool, the zygote
that forks them and its jupyter_client provisioner, and the runner's scratch directories."""
