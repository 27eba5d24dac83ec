"""OpenFaaS functions from the OpenFaaS/KubeEdge thesis (Table 5.1), in the python3-http template's shape.

Each `<name>/handler.py` is self-contained (faas-cli copies only the handler folder into the image) and
exposes `handle(event, context) -> dict` as the template's index.py calls it (see stack.yaml).
"""
