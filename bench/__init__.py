"""Benchmarks and the synthetic product data they run on."""
