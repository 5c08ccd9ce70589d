"""Orchestration of each command: validate the inputs, run the stages, publish the output; no algorithm lives here."""
