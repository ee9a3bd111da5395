"""A corpus of hostile workflow documents and the harness that loads them within bounds."""
