"""Edge side of a testbed: pre-existing hosts (Raspberry Pis) registered from the stack file."""
