"""The base of every model class (frozen, unknown keys rejected, camelCase config keys accepted), and
how a config that fails it is reported: the key in `edgerig:` form, and the fix."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class StackConfigError(ValueError):
    """A stack file or config map that cannot become a Testbed; the message names key and fix."""


def _key_path(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "edgerig"
    out = f"edgerig:{loc[0]}"
    for part in loc[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def format_validation_error(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        key = _key_path(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            msg = "unknown config key: check the spelling against Pulumi.yaml (keys are camelCase)"
        elif err["type"] == "missing":
            msg = "required key is missing: add it to the stack file (see Pulumi.yaml for its meaning)"
        lines.append(f"{key}: {msg}")
    return "invalid stack configuration:\n  " + "\n  ".join(lines)
