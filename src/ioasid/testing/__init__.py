"""Test support: a pytest plugin with backend-parametrised fixtures, the differential
harness (sim vs. real kernel), and the oracle runner."""
