"""Data for training and evaluation: synthetic lesions, task datasets, episode sampling."""
