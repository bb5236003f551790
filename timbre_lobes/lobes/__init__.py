"""Neural building blocks (SpeechBrain lobes): front ends, the ResNet-LDE encoder, pooling, heads."""
