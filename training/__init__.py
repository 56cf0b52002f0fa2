"""PyTorch training for pyfill's models: one trainer per system and a shared harness."""
