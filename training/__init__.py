"""cvserve training: datasets, losses, metrics, the fit loop and its command line."""
