"""absl entry points; each pipeline is also a console script."""
