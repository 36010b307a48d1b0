"""cvserve's command-line tools: archive, serve, client (and their small helpers)."""
