"""Front ends: the trainable transform layer, and SpeechBrain's Fbank and Leaf with a level-relative floor.

Shi, Cooper & Yamagishi (TASLP 2022) call it the *transform layer*: SpeechBrain's
``SincConv`` (Ravanelli & Bengio 2018) whose two learnable parameters per filter,
the low cut-off and the bandwidth, start either mel-spaced (``transMel``) or one
filter per MIDI semitone (``transMIDI``).

Every front end takes ``dynamic_range_db`` (None by default: each one's own
behaviour, unchanged): energies relative to each clip's loudest (frame, band)
energy, floored that many dB below it (:func:`level_relative`), before the log
(transform layer, :class:`Fbank`) or before PCEN (:class:`Leaf`).
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.lobes import features as sb_features
from speechbrain.nnet.CNN import SincConv
from speechbrain.processing.features import InputNormalization, spectral_magnitude
from speechbrain.utils.autocast import fwd_default_precision

INIT_TYPES = ("mel", "midi")
OUTPUTS = ("signed", "log_energy")


def check_dynamic_range(dynamic_range_db):
    """Returns ``dynamic_range_db`` if it is None or positive; raises ValueError otherwise."""
    if dynamic_range_db is not None and not dynamic_range_db > 0:
        raise ValueError(f"dynamic_range_db must be positive or None, got {dynamic_range_db}")
    return dynamic_range_db


def level_relative(energy, dynamic_range_db):
    """Energies relative to each clip's loudest one, floored ``dynamic_range_db`` below it.

    ``max(E / E_max, 10 ** (-dynamic_range_db / 10))`` with ``E_max`` the largest
    energy of each batch row (over every other axis): a gain leaves it unchanged,
    what lies more than ``dynamic_range_db`` below the loudest part (a noise floor,
    quantisation noise, a digitally silent tail) maps to the floor, and no row
    depends on another. No absolute floor: an all-zero row maps to the floor.
    ``E_max`` is a constant for the gradient.

    Arguments
    ---------
    energy : torch.Tensor
        [batch, ...] non-negative energies (power, not amplitude).
    dynamic_range_db : float
        Positive floor, in dB below each row's maximum.

    Returns
    -------
    torch.Tensor
        Same shape, in ``[10 ** (-dynamic_range_db / 10), 1]``.

    Example
    -------
    >>> energy = torch.tensor([[[4.0, 1.0, 0.0]], [[400.0, 0.0, 0.0]]])
    >>> level_relative(energy, 10.0)
    tensor([[[1.0000, 0.2500, 0.1000]],
    <BLANKLINE>
            [[1.0000, 0.1000, 0.1000]]])
    """
    dims = tuple(range(1, energy.ndim))
    peak = energy.detach().amax(dim=dims, keepdim=True).clamp(min=torch.finfo(energy.dtype).tiny)
    return (energy / peak).clamp(min=10 ** (-dynamic_range_db / 10))


def midi_to_hz(note):
    """Equal-tempered frequency of a (possibly fractional) MIDI note number, A4 = 69 = 440 Hz.

    Example
    -------
    >>> float(midi_to_hz(torch.tensor(69.0)))
    440.0
    """
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def midi_band_edges(n_filters, lowest_note=0, sample_rate=16000):
    """Band edges of one filter per MIDI note ``k``: ``[midi_to_hz(k-1), midi_to_hz(k+1)]``.

    The upper edge is clamped just below Nyquist, so the geometric centre of every
    unclamped band is the note's own frequency ``440 * 2**((k - 69) / 12)``.

    Arguments
    ---------
    n_filters : int
        Number of notes, from ``lowest_note`` upwards (the paper: 122, notes 0..121).
    lowest_note : int
        MIDI number of the first filter.
    sample_rate : int
        Sampling rate in Hz; bands stop below ``sample_rate / 2``.

    Returns
    -------
    low, high : torch.Tensor
        [n_filters] lower and upper edges in Hz.

    Example
    -------
    >>> low, high = midi_band_edges(122)
    >>> round(float((low[69] * high[69]).sqrt()), 3)
    440.0
    >>> bool(high.max() < 8000)
    True
    """
    notes = torch.arange(lowest_note, lowest_note + n_filters, dtype=torch.float64)
    nyquist = sample_rate / 2.0
    low = midi_to_hz(notes - 1.0)
    high = midi_to_hz(notes + 1.0).clamp(max=nyquist * 0.999)
    low = torch.minimum(low, high * 0.999)
    return low.float(), high.float()


class TransformLayer(SincConv):
    """SincConv filterbank on the raw waveform, mel- or MIDI-initialised.

    Each filter is a windowed-sinc band-pass whose low cut-off and bandwidth are
    learnt (SpeechBrain's ``SincConv``); only the initial grid differs:

    * ``init_type="mel"``: SpeechBrain's own mel spacing from ``min_low_hz`` to Nyquist.
    * ``init_type="midi"``: filter ``k`` spans the semitones either side of MIDI note
      ``lowest_note + k`` (see :func:`midi_band_edges`).

    Two outputs, chosen by ``output``:

    * ``"signed"``: the filter outputs themselves, decimated by ``stride``, as the
      paper's code feeds them to the ResNet.
    * ``"log_energy"``: log of each filter's energy per frame (rectified and
      log-compressed). It is computed in the frequency domain, which Parseval makes
      equivalent to filtering and summing the squared output over a frame window,
      at a fraction of a stride-1 convolution's cost: ``|STFT|^2`` (Hann window of
      ``kernel_size`` samples, hop ``stride``) weighted by each sinc filter's
      squared magnitude response. Gradients still reach the cut-offs.

    Arguments
    ---------
    out_channels : int
        Number of filters (the paper: 122).
    kernel_size : int
        Filter length in samples, odd (the paper: 801 = 50 ms at 16 kHz).
    stride : int
        Hop between output frames in samples (the paper: 192 = 12 ms).
    sample_rate : int
        Sampling rate of the input in Hz.
    init_type : str
        ``"mel"`` or ``"midi"``.
    output : str
        ``"signed"`` or ``"log_energy"``.
    min_low_hz : float
        Lowest possible low cut-off in Hz (the paper: 5).
    min_band_hz : float
        Smallest possible bandwidth in Hz (the paper: 5).
    lowest_note : int
        MIDI number of the first filter when ``init_type="midi"``.
    log_floor : float
        Added to energies before the log, so silence maps to a finite value.
    dynamic_range_db : float, optional
        ``log_energy`` only: features relative to the clip's loudest (frame,
        filter) energy, floored ``dynamic_range_db`` below it, as the top-dB clamp
        of common dB conversions does (SpeechBrain's ``Fbank`` clamps at 80 dB).
        The output is then ``log max(E / E_max, 10 ** (-dynamic_range_db / 10))``:
        a gain leaves it unchanged, and what lies that far below the loudest part
        (a -70 dBFS noise floor, quantisation noise, a digitally silent tail) no
        longer shapes it. None: absolute log energies (``log(E + log_floor)``).

    Example
    -------
    >>> layer = TransformLayer(out_channels=40, kernel_size=401, stride=160)
    >>> layer(torch.rand(2, 16000)).shape
    torch.Size([2, 100, 40])
    >>> layer = TransformLayer(out_channels=40, kernel_size=401, stride=160, output="signed")
    >>> layer(torch.rand(2, 16001)).shape
    torch.Size([2, 101, 40])
    """

    def __init__(
        self,
        out_channels=122,
        kernel_size=801,
        stride=192,
        sample_rate=16000,
        init_type="mel",
        output="log_energy",
        min_low_hz=5.0,
        min_band_hz=5.0,
        lowest_note=0,
        log_floor=1e-6,
        dynamic_range_db=None,
    ):
        if init_type not in INIT_TYPES:
            raise ValueError(f"init_type must be one of {INIT_TYPES}, got {init_type!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        # Read by _init_sinc_conv, which SincConv.__init__ calls.
        self.init_type = init_type
        self.lowest_note = lowest_note
        super().__init__(
            out_channels=out_channels,
            kernel_size=kernel_size,
            in_channels=1,
            stride=stride,
            padding="same",
            sample_rate=sample_rate,
            min_low_hz=min_low_hz,
            min_band_hz=min_band_hz,
        )
        self.output = output
        self.log_floor = log_floor
        self.dynamic_range_db = check_dynamic_range(dynamic_range_db)
        self.n_fft = 2 ** math.ceil(math.log2(kernel_size))
        self.register_buffer("stft_window", torch.hann_window(kernel_size), persistent=False)

    def _init_sinc_conv(self):
        """Sets the learnable ``low_hz_``/``band_hz_`` [out_channels, 1] from the chosen grid."""
        super()._init_sinc_conv()  # mel grid, window and time axis
        if self.init_type == "midi":
            low, high = midi_band_edges(self.out_channels, self.lowest_note, self.sample_rate)
            # SincConv adds min_low_hz / min_band_hz back in _get_sinc_filters.
            # Bands of the lowest notes are narrower than min_band_hz; they start at it.
            low_param = (low - self.min_low_hz).clamp(min=0.0)
            band_param = (high - low - self.min_band_hz).clamp(min=0.0)
            self.low_hz_ = torch.nn.Parameter(low_param.unsqueeze(1))
            self.band_hz_ = torch.nn.Parameter(band_param.unsqueeze(1))

    def band_edges(self):
        """Current (low, high) cut-offs in Hz, each [out_channels], as the filters use them."""
        low = self.min_low_hz + torch.abs(self.low_hz_)
        high = torch.clamp(
            low + self.min_band_hz + torch.abs(self.band_hz_),
            self.min_low_hz,
            self.sample_rate / 2,
        )
        return low[:, 0], high[:, 0]

    def forward(self, wavs):
        """Filters a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            [batch, samples] waveforms.

        Returns
        -------
        torch.Tensor
            [batch, ceil(samples / stride), out_channels] features.
        """
        if wavs.ndim != 2:
            raise ValueError(f"expected [batch, samples] waveforms, got shape {tuple(wavs.shape)}")
        if self.output == "signed":
            return super().forward(wavs)
        return self._log_energy(wavs)

    def _log_energy(self, wavs):
        """[batch, samples] -> [batch, frames, out_channels] log filter energies."""
        self.device = wavs.device
        # Same framing as the signed output: frame t is centred on sample t * stride,
        # giving ceil(samples / stride) frames (torch.stft centres the window in n_fft).
        pad = self.n_fft // 2
        wavs = F.pad(wavs.unsqueeze(1), (pad, pad - 1), mode="reflect").squeeze(1)
        spec = torch.stft(
            wavs,
            n_fft=self.n_fft,
            hop_length=self.stride,
            win_length=self.kernel_size,
            window=self.stft_window,
            center=False,
            return_complex=True,
        )  # [batch, bins, frames]
        power = spec.real**2 + spec.imag**2
        filters = self._get_sinc_filters()[:, 0, :]  # [out_channels, kernel_size]
        response = torch.fft.rfft(filters, n=self.n_fft).abs() ** 2  # [out, bins]
        energy = torch.matmul(power.transpose(1, 2), response.t()) / self.n_fft
        if self.dynamic_range_db is None:
            return torch.log(energy + self.log_floor)
        return torch.log(level_relative(energy, self.dynamic_range_db))


class Fbank(sb_features.Fbank):
    """SpeechBrain's ``Fbank`` (log-mel filterbank) with an optional level-relative floor.

    SpeechBrain's log-mel is ``10 log10(max(E, 1e-10))`` (dB re 1.0), floored 80 dB
    below each clip's own maximum (``Filterbank``'s ``top_db``, which ``Fbank``
    does not pass on): absolute, so a gain shifts every feature, and 80 dB deep,
    so a -70 dBFS noise floor fills the silent stretches and bands. With
    ``dynamic_range_db`` it is instead ``10 log10(max(E / E_max, 10 ** (-dynamic_range_db / 10)))``
    (:func:`level_relative`): 0 dB at the clip's loudest (frame, band), floored
    ``dynamic_range_db`` below it, the same for any gain.

    Arguments
    ---------
    *args, **kwargs
        SpeechBrain's ``Fbank`` arguments (``sample_rate``, ``n_fft``, ``n_mels``,
        ``win_length``, ``hop_length``, ...).
    dynamic_range_db : float, optional
        The floor, in dB below each clip's loudest energy. None: SpeechBrain's
        ``Fbank`` unchanged.

    Example
    -------
    >>> fbank = Fbank(n_mels=40, dynamic_range_db=60)
    >>> feats = fbank(torch.rand(2, 16000))
    >>> feats.shape
    torch.Size([2, 101, 40])
    >>> float(feats.amax()), float(feats.amin()) >= -60.0
    (0.0, True)
    """

    def __init__(self, *args, dynamic_range_db=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_range_db = check_dynamic_range(dynamic_range_db)
        if self.dynamic_range_db is not None:
            self.compute_fbanks.log_mel = False  # linear energies; the log comes after the floor

    def forward(self, wav):
        """[batch, samples] waveforms -> [batch, frames, n_mels] log-mel features (dB)."""
        if self.dynamic_range_db is None:
            return super().forward(wav)
        return self._level_relative_forward(wav)

    @fwd_default_precision(cast_inputs=torch.float32)
    def _level_relative_forward(self, wav):
        """``Fbank.forward`` with :func:`level_relative` energies before the log."""
        energies = self.compute_fbanks(spectral_magnitude(self.compute_STFT(wav)))
        fbanks = self.compute_fbanks.multiplier * torch.log10(level_relative(energies, self.dynamic_range_db))
        if self.deltas:
            delta1 = self.compute_deltas(fbanks)
            delta2 = self.compute_deltas(delta1)
            fbanks = torch.cat([fbanks, delta1, delta2], dim=2)
        if self.context:
            fbanks = self.context_window(fbanks)
        return fbanks


class Leaf(sb_features.Leaf):
    """SpeechBrain's ``Leaf`` with an optional level-relative floor on the energies before PCEN.

    SpeechBrain's LEAF: Gabor filterbank, squared modulus, Gaussian lowpass pooling
    (whose learnable per-filter bias, initialised at 1, is *added* to the energies),
    ``max(E, 1e-5)``, then PCEN compression. Its floor is thus absolute: at
    initialisation the bias sits 15-20 dB under a full-scale sine's loudest
    (frame, filter) energy, so a -70 dBFS noise floor hardly shows, but a 20 dB
    gain changes the features and a quiet note lies mostly under it. With
    ``dynamic_range_db`` the pooled energies go without the bias (an absolute
    offset would undo the level invariance) and become
    ``max(E / E_max, 10 ** (-dynamic_range_db / 10))`` (:func:`level_relative`)
    before PCEN: the features are the same for any gain, and what lies that far
    under the clip's loudest (frame, filter) energy no longer shapes them.

    Arguments
    ---------
    *args, **kwargs
        SpeechBrain's ``Leaf`` arguments (``out_channels``, ``window_len``,
        ``window_stride``, ``sample_rate``, ``in_channels``, ``min_freq``, ...).
    dynamic_range_db : float, optional
        The floor, in dB below each clip's loudest pooled energy. None:
        SpeechBrain's ``Leaf`` unchanged (with the pooling bias).

    Example
    -------
    >>> leaf = Leaf(out_channels=8, window_len=25.0, window_stride=10.0, in_channels=1, dynamic_range_db=60)
    >>> leaf(torch.rand(2, 4000)).shape
    torch.Size([2, 25, 8])
    >>> leaf.pooling._bias is None
    True
    """

    def __init__(self, *args, dynamic_range_db=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_range_db = check_dynamic_range(dynamic_range_db)
        if self.dynamic_range_db is not None:
            self.pooling._bias = None

    def forward(self, x):
        """[batch, samples] waveforms -> [batch, frames, out_channels] LEAF features."""
        if self.dynamic_range_db is None:
            return super().forward(x)
        return self._level_relative_forward(x)

    @fwd_default_precision(cast_inputs=torch.float32)
    def _level_relative_forward(self, x):
        """``Leaf.forward`` with :func:`level_relative` energies in place of ``max(E, 1e-5)``."""
        if not self.skip_transpose:
            x = x.transpose(1, -1)
        if x.ndim == 2:
            x = x.unsqueeze(1)
        outputs = self.pooling(self._squared_modulus_activation(self.complex_conv(x)))
        outputs = level_relative(outputs, self.dynamic_range_db)
        if self.compression:
            outputs = self.compression(outputs)
        if not self.skip_transpose:
            outputs = outputs.transpose(1, -1)
        return outputs


class GlobalNormalization(InputNormalization):
    """SpeechBrain's global mean/variance normalisation, safe behind a trainable front end.

    ``InputNormalization`` keeps its running statistics as tensors computed from
    the input; when the input carries gradients (a learnable filterbank), those
    statistics keep the graph alive and the next backward pass fails. Here the
    statistics are updated from a detached copy. Global statistics, not per-note
    ones: per-note mean normalisation removes much of an instrument's spectral
    envelope.

    ``std_floor`` > 0 divides each feature by at least ``std_floor`` times the
    median feature's standard deviation. A feature that barely varies in
    training (a band at a level-relative floor in every training note, see
    ``dynamic_range_db``) otherwise has a standard deviation near zero, and the
    slightest change there at inference (quantisation noise, a noise floor)
    becomes a huge normalised value. The stored statistics are unchanged; the
    floor applies when normalising.

    Arguments
    ---------
    update_until_epoch : int
        Statistics are updated in training epochs before this one.
    std_norm : bool
        Divide by the standard deviation (else only subtract the mean).
    std_floor : float
        Relative floor on the standard deviation (0 = SpeechBrain's, at least 1e-10).

    Example
    -------
    >>> norm = GlobalNormalization()
    >>> feats = torch.rand(4, 10, 3, requires_grad=True)
    >>> for _ in range(2):
    ...     norm(feats * 2, torch.ones(4)).sum().backward()
    >>> floored = GlobalNormalization(std_floor=0.5)
    >>> flat = torch.cat([torch.rand(4, 10, 2), torch.full((4, 10, 1), 3.0)], dim=2)
    >>> _ = floored(flat, torch.ones(4), epoch=0)  # the third feature never varies
    >>> _ = floored.eval()
    >>> float(floored(flat + 1e-3, torch.ones(4))[..., 2].abs().max()) < 0.1
    True
    """

    def __init__(self, update_until_epoch=2, std_norm=True, std_floor=0.0):
        super().__init__(norm_type="global", std_norm=std_norm, update_until_epoch=update_until_epoch)
        if std_floor < 0:
            raise ValueError(f"std_floor must be >= 0, got {std_floor}")
        self.std_floor = float(std_floor)

    def forward(self, x, lengths=None, epoch=None):
        """[batch, time, features] -> the same, normalised with the global statistics."""
        out = super().forward(x, lengths, epoch=epoch)
        if self.std_floor == 0 or not self.std_norm:
            return out
        std = self.glob_std.to(out.device)
        floored = std.clamp(min=self.std_floor * float(std.median()))
        return out * (std / floored)

    def _update_global_stats(self, x, mask):
        super()._update_global_stats(x.detach(), mask)
