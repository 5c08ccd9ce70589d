"""One module per pipeline stage; each turns one artifact into the next."""
