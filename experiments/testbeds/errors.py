"""The errors a testbed raises, below every testbed module so that each can raise them."""

from __future__ import annotations


class TestbedError(RuntimeError):
    """A testbed cannot be built, used or removed; the message names what and the fix."""

    __test__ = False  # not a pytest test class despite the name


class SystemDied(RuntimeError):
    """A process of the system under test exited during a run: nothing it measured is meaningful."""
