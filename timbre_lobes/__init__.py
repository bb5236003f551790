"""timbre-lobes: SpeechBrain lobes and recipes for musical-instrument timbre embeddings.

Follows Shi, Cooper & Yamagishi, "Use of speaker recognition approaches for
learning and evaluating embedding representations of musical instrument sounds",
IEEE/ACM TASLP 30 (2022).
"""

__version__ = "0.1.0"
