// The console's microphone tap: an AudioWorklet that resamples the capture to the session's rate
// (linear interpolation; the browser's own rate is usually 48 kHz) and posts 20 ms of PCM s16le at a time.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.rate = options.processorOptions.targetRate;
    this.step = sampleRate / this.rate; // input samples per output sample
    this.position = 0; // where the next output sample falls, in input samples from the block's start
    this.previous = 0; // the last input sample of the previous block, for interpolation across blocks
    this.size = Math.round(this.rate / 50); // 20 ms
    this.chunk = new Int16Array(this.size);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    while (this.position < input.length) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = i === 0 ? this.previous : input[i - 1];
      const b = input[i];
      const value = Math.max(-1, Math.min(1, a + (b - a) * frac));
      this.chunk[this.filled++] = value < 0 ? value * 0x8000 : value * 0x7fff;
      if (this.filled === this.chunk.length) {
        this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
        this.chunk = new Int16Array(this.size); // the posted buffer was transferred (detached)
        this.filled = 0;
      }
      this.position += this.step;
    }
    this.position -= input.length;
    this.previous = input[input.length - 1];
    return true;
  }
}

registerProcessor("vm-capture", CaptureProcessor);
