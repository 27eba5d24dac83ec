"""Cluster bootstrap: host configuration (infra/hosts) run as Pulumi resources during `pulumi up`."""
