"""Flower-facing code, thin: agents over Flower messages, records, the in-process simulation
launcher, and the local SuperLink that ``flwr run`` leaves behind."""
