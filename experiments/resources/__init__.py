"""`edgerig run resources` and the process meter every experiment uses for CPU and memory."""
