"""Host configuration: K3s/KubeEdge on Pis (pyinfra) and VMs (ansible-runner); see api.py."""
