"""The input's audio, carried into a written clip (`stylekit.video.encode.ClipWriter`).

The audio is copied packet by packet (no loss, no re-encoding) where the output container
takes its codec, and re-encoded to AAC where it does not. Into MP4, only the codecs MP4's
players commonly play are copied: MP4 can now hold PCM, for one, which QuickTime and
browsers do not play. It is laid on the same timeline as the video (the input's first frame
at 0, so the two stay in sync), muxed as the frames are written so that the file is
interleaved, and cut where the written clip ends (a partial clip gets its part of the sound).
"""

from __future__ import annotations

from fractions import Fraction

#: What is copied into MP4 as it is; anything else there is re-encoded to AAC.
MP4_COPIED = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})


class AudioCopy:
    """The first audio stream of `clip` (FFmpeg's best) into the output container `out`,
    whose header is not written yet. Call `until(t)` as the video reaches `t` seconds, then
    `finish(end)`; or `close()` to stop."""

    def __init__(self, av, out, clip):
        self._input = av.open(clip.path, "r")
        try:
            source = self._input.streams.best("audio") or self._input.streams.audio[0]
            codec = source.codec_context.codec.canonical_name  # the codec's name, not its decoder's (mp3float)
            fits = codec in out.supported_codecs and (out.format.name != "mp4" or codec in MP4_COPIED)
            self.copied = fits
            if fits:
                self._stream = out.add_stream_from_template(source)
                self._items = self._input.demux(source)
            else:
                context = source.codec_context
                self._stream = out.add_stream("aac", rate=context.sample_rate, layout=_aac_layout(context.layout))
                self._items = self._input.decode(source)
            self._out = out
            self._time_base = Fraction(source.time_base.numerator, source.time_base.denominator)
            self._shift = round(clip.start / self._time_base)  # the input's first frame is at 0 in the output
            self._next = self._lead = None
            self._done = False
        except BaseException:
            self._input.close()
            raise

    def until(self, seconds: float) -> None:
        """Mux the audio that starts before `seconds` on the output's timeline."""
        while not self._done:
            item = self._next if self._next is not None else next(self._items, None)
            if item is None:
                self._done = True
                break
            self._next = None
            if not self._usable(item):
                continue
            if self._before_start(item):
                self._lead = item if self.copied else None
                continue
            if float((item.pts - self._shift) * self._time_base) >= seconds:
                self._next = item
                break
            if self._lead is not None:
                self._write(self._lead)
                self._lead = None
            self._write(item)

    def _write(self, item) -> None:
        item.pts -= self._shift
        if not self.copied:
            for packet in self._stream.encode(item):
                self._out.mux(packet)
            return
        if item.dts is not None:
            item.dts -= self._shift
        item.stream = self._stream
        self._out.mux(item)

    def _usable(self, item) -> bool:
        """Something to write: demuxing ends with an empty packet."""
        return item.pts is not None and not (self.copied and item.size == 0)

    def _before_start(self, item) -> bool:
        """Audio that ends before the first frame is left out, but for the packet just
        before the first one kept: AAC's and MP3's frames overlap (each decodes with the
        one before), and a container marks it as not to be played when it precedes 0."""
        length = item.duration if self.copied else Fraction(item.samples, item.sample_rate) / self._time_base
        return item.pts - self._shift + (length or 0) <= 0

    def finish(self, seconds: float) -> None:
        """Mux the audio up to `seconds`, the end of the written clip, and flush."""
        try:
            self.until(seconds)
            if not self.copied:
                for packet in self._stream.encode(None):
                    self._out.mux(packet)
        finally:
            self.close()

    def close(self) -> None:
        self._input.close()


#: The channel layouts AAC encodes, by number of channels (FFmpeg's standard ones).
_STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _aac_layout(layout) -> str:
    """The layout to encode `layout` in: its own where it is named, the standard one for
    its number of channels where its order is unspecified (PCM in Matroska often is, and
    FFmpeg's AAC encoder refuses it), stereo beyond AAC's eight channels."""
    if not layout.name.endswith("channels"):
        return layout.name
    return _STANDARD_LAYOUTS.get(layout.nb_channels, "stereo")
