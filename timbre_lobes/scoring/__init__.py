"""Verification trials, EER/minDCF, family identification F1 and result files."""
