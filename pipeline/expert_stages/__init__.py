"""The expert stages over experts/: train-experts, evaluate-experts, import-experts."""
