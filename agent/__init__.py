"""Fusebox agent: enforce resiliency policies in-process."""
