"""Using a trained model: the export folder, the inference interface and the command line."""
