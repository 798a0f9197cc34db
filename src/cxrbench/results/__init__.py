"""Run folders on disk, the paper's published numbers, and the tables built from both."""
