"""Numerical kernels shared by every engine."""
