"""Kubernetes platform: NATS, metrics-server, Prometheus/Grafana and OpenFaaS (pulumi-kubernetes)."""
