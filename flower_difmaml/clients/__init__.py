"""Agent-side behaviour (no Flower import): Byzantine attacks and combination rules.

``attacks`` turns what a Byzantine agent sends into an attack; ``robust`` has the
coordinate-wise median and trimmed mean; ``resilient`` is the loss-based rule of
Li, Abbas and Koutsoukos (2020), computed on the agent with its own data.
"""
