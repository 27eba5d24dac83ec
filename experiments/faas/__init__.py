"""`edgerig run faas`: the OpenFaaS thesis's functions under a ramp of virtual users, per scenario."""
