"""Structured pruning: importance scores, layer policy and transformer attention adapters.

Torch-Pruning's dependency graph decides which channels go together; these
modules decide how many and which, and keep model attributes consistent.
"""
