"""Fan-out between nodes: one interface (base.py), an in-process and a Redis implementation."""
