"""Audio-effect augmentation: reverb, EQ, filtering, compression, distortion, codecs.

Real recordings of an instrument differ by room, microphone, mixing and encoding;
rendered notes differ by none of these. Ramires & Serra (2019), "Data augmentation
for instrument classification robust to audio effects" (DAFx; the paper's
reference [6]), showed that training with such effects makes instrument
recognition robust to them. The effects themselves are Spotify's ``pedalboard``
(JUCE's DSP); here is only the part it lacks: drawing each effect's parameters
at random for every training crop, on a padded batch, so that an effect can sit
in SpeechBrain's ``Augmenter`` beside its own time-domain augmentations.
"""

import math

import numpy as np
import pedalboard
import torch


class AudioEffect(torch.nn.Module):
    """One ``pedalboard`` effect with random parameters, drawn anew for every example.

    Each row of the batch is processed alone, at its own length (``lengths``), so
    the padding stays zero and no row depends on its neighbours. The output has
    the input's length (a reverb's tail beyond the crop is cut). Parameters are
    drawn with torch's random generator, so ``speechbrain.utils.seed_everything``
    makes a run repeatable.

    Arguments
    ---------
    effect : str
        A ``pedalboard`` plugin class, e.g. ``"Reverb"``, ``"PeakFilter"``,
        ``"LowpassFilter"``, ``"Compressor"``, ``"Distortion"``, ``"MP3Compressor"``.
    sample_rate : int
        Sample rate of the waveforms, in Hz.
    ranges : dict
        Parameter name -> ``[low, high]`` (drawn uniformly for every example) or a
        single number (fixed). Names and units are the plugin's own (e.g.
        ``cutoff_frequency_hz``, ``gain_db``, ``room_size``).
    log_scale : list of str
        Parameters drawn uniformly on a log scale (frequencies, ratios).

    Raises
    ------
    ValueError
        An unknown effect or parameter name, or a range with ``low > high`` or a
        non-positive bound on a log scale (at construction, not mid-training).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> eq = AudioEffect("PeakFilter", 16000, {"cutoff_frequency_hz": [200, 4000], "gain_db": [-9, 9]},
    ...                  log_scale=["cutoff_frequency_hz"])
    >>> wavs = torch.randn(2, 8000) * 0.1
    >>> out = eq(wavs, torch.tensor([1.0, 0.5]))
    >>> out.shape, bool(out[1, 4000:].abs().max() == 0)
    (torch.Size([2, 8000]), True)
    """

    def __init__(self, effect, sample_rate, ranges, log_scale=()):
        super().__init__()
        plugin = getattr(pedalboard, effect, None)
        if not (isinstance(plugin, type) and issubclass(plugin, pedalboard.Plugin)) or plugin is pedalboard.Plugin:
            raise ValueError(f"pedalboard has no effect {effect!r}")
        self.effect = effect
        self.sample_rate = float(sample_rate)
        self.ranges = {}
        for name, value in ranges.items():
            low, high = (value, value) if isinstance(value, (int, float)) else value
            if low > high:
                raise ValueError(f"{effect}: range of {name} has low {low} > high {high}")
            if name in log_scale and low <= 0:
                raise ValueError(f"{effect}: {name} is drawn on a log scale and needs positive bounds")
            self.ranges[name] = (float(low), float(high))
        unknown = set(log_scale) - set(self.ranges)
        if unknown:
            raise ValueError(f"{effect}: log_scale names parameters without a range: {sorted(unknown)}")
        self.log_scale = set(log_scale)
        self._plugin_class = plugin
        try:  # an unknown parameter name or value fails here, not in the first training batch
            plugin(**self._draw())
        except (TypeError, ValueError) as error:
            raise ValueError(f"{effect}: {error}") from error

    def _draw(self):
        """One set of parameters: name -> value."""
        params = {}
        for name, (low, high) in self.ranges.items():
            u = float(torch.rand(()))
            if name in self.log_scale:
                params[name] = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
            else:
                params[name] = low + u * (high - low)
        return params

    def forward(self, waveforms, lengths):
        """Applies the effect to each row at its own length.

        Arguments
        ---------
        waveforms : torch.Tensor
            [batch, time] waveforms (full scale = 1).
        lengths : torch.Tensor
            [batch] relative lengths (SpeechBrain's convention).

        Returns
        -------
        torch.Tensor
            [batch, time], the input's dtype and device; zero beyond each length.
        """
        out = torch.zeros_like(waveforms)
        n_samples = waveforms.shape[-1]
        for row, rel in enumerate(lengths.tolist()):
            n = min(n_samples, int(round(rel * n_samples)))
            if n == 0:
                continue
            signal = waveforms[row, :n].detach().cpu().numpy().astype(np.float32)
            processed = self._plugin_class(**self._draw())(signal, self.sample_rate)[:n]
            out[row, : len(processed)] = torch.from_numpy(np.ascontiguousarray(processed)).to(out)
        return out

    def extra_repr(self):
        return f"{self.effect}, ranges={self.ranges}"
