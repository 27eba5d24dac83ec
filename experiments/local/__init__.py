"""Run the baseline system as local processes: supervisor, nats-server launcher, port/temp-dir helpers.

Shared by `edgerig run latency` and the failover experiment.
"""
