"""Journey workflows: one module per journey, shared mechanics in common.py."""
