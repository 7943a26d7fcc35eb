"""Device models for the simulated host."""
