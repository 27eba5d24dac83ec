"""Offline container images (buildah, debootstrap, the lock file) and the root filesystems they and the
test fleet start from."""
