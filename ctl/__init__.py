"""`minik8s ctl`, the kubectl-style command-line client; the verbs are wired in ctl/cmd.py."""
