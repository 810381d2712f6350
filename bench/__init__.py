"""Benchmarks (issue 7): how fast journeys start, react and send, against the bare Temporal
floor. ``python -m bench [--size smoke|full]``; BENCHMARKS.md has the numbers and how to
read them."""
