"""Algorithms of the paper, one module each, batched over rows and namespace generic."""
