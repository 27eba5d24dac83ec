"""The thesis's load shape, without locust: importing locust patches the standard library for
gevent, so only the load generator's own process (load.py) may import it; the CLI checks settings
with these."""

from __future__ import annotations


def users_at(t: float, users: int, ramp_s: float, hold_s: float) -> int | None:
    """Virtual users at `t` s: 1 -> `users` over `ramp_s`, then `users` for `hold_s`; None = the end."""
    if t < ramp_s:
        return 1 + round((users - 1) * t / ramp_s)
    if t < ramp_s + hold_s:
        return users
    return None


def ramp_problems(users: int | None, ramp_s: float, hold_s: float, timeout_s: float) -> list[str]:
    """What is wrong with a ramp's settings (empty: nothing); `users` None = chosen later."""
    problems = []
    if users is not None and users < 1:
        problems.append(f"--users must be >= 1 (got {users})")
    if not ramp_s > 0:
        problems.append(f"--ramp-s must be > 0 (got {ramp_s:g}): the users rise from 1 over it")
    if hold_s < 0:
        problems.append(f"--hold-s must be >= 0 (got {hold_s:g})")
    if not timeout_s > 0:
        problems.append(f"--timeout-s must be > 0 (got {timeout_s:g})")
    return problems
