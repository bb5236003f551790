"""Audio input, NSynth-format metadata and label spaces, training-data augmentation."""
