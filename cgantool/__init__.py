"""cgantool: train, sample, evaluate and interpolate contrastive GANs."""

__version__ = "0.1.0"
