"""Self-critical sequence training (SCST): after cross-entropy, sample captions and follow their CIDEr-D."""
