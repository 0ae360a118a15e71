"""Fusebox control plane: spec model, resolution, stores, gRPC server and CLI."""
