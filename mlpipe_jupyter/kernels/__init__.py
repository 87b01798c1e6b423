"""Step kernels for the local executor: how one starts (stepkernel), how the runner talks to it
and asks it to exit (client), the warm pool, the zygote that forks them and its jupyter_client
provisioner, and the runner's scratch directories."""
