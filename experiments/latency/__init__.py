"""`edgerig run latency` / `edgerig run throughput`: the baseline system measured on this machine."""
