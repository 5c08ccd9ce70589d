"""The only modules that import heavy optional runtimes; each imports inside its functions."""
