"""The VEI application on Kubernetes: gateway, vision app, cameras, local sink."""
