"""Fusebox benchmarks: not tests. Run ``python -m bench.agent_overhead``; results in BENCHMARKS.md.

Benchmarks print their targets as PASS/FAIL text; no test ever asserts a timing.
"""
