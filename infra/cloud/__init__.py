"""OpenStack side of a testbed: network, security group generated from the model, keypair, VMs."""
