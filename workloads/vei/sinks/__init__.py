"""Cloud sinks: where PublishToCloud results go. One module per provider, one common interface.

`spec` parses `--cloud` specs and imports no client library (the stack model uses it); `factory`
builds the sinks and imports them all.
"""
