'use strict';
// WAV helpers: 16-bit PCM mono files in and out, and the chunking a live stream needs.

const fs = require('fs');

/** Parse a WAV file's bytes: { pcm, rate } for 16-bit PCM mono; throws a clear Error otherwise. */
function parseWav(data, name = 'the data') {
  if (data.length < 12 || data.toString('ascii', 0, 4) !== 'RIFF' || data.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error(`${name} is not a WAV file`);
  }
  let offset = 12;
  let format = null;
  while (offset + 8 <= data.length) {
    const id = data.toString('ascii', offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      if (body + 16 > data.length) throw new Error(`${name}: truncated fmt chunk`);
      format = {
        encoding: data.readUInt16LE(body),
        channels: data.readUInt16LE(body + 2),
        rate: data.readUInt32LE(body + 4),
        bits: data.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      if (!format) throw new Error(`${name}: data chunk before fmt chunk`);
      if (format.encoding !== 1 || format.bits !== 16 || format.channels !== 1) {
        throw new Error(`${name}: only 16-bit PCM mono WAV is supported`);
      }
      // A streamed WAV may say its data is longer than what was written: keep what is there.
      const end = Math.min(body + size, data.length);
      return { rate: format.rate, pcm: data.subarray(body, end - ((end - body) % 2)) };
    }
    offset = body + size + (size % 2);
  }
  throw new Error(`${name}: no data chunk`);
}

/** Read a 16-bit PCM mono WAV file: { pcm, rate }. */
function readWav(path) {
  return parseWav(fs.readFileSync(path), path);
}

/** The bytes of a WAV file holding PCM s16le mono at `rate` Hz. */
function wavBytes(pcm, rate) {
  if (!Number.isInteger(rate) || rate <= 0) throw new RangeError(`a sample rate is a positive integer, not ${rate}`);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + pcm.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(pcm.length, 40);
  return Buffer.concat([header, pcm]);
}

/** Write PCM s16le mono at `rate` Hz as a WAV file. */
function writeWav(path, pcm, rate) {
  fs.writeFileSync(path, wavBytes(pcm, rate));
}

/** PCM split into `ms`-long pieces (the last may be shorter), as a session's audio is sent. */
function* chunks(pcm, rate, ms = 20) {
  const size = Math.max(2, Math.round((rate * ms) / 1000) * 2);
  for (let offset = 0; offset < pcm.length; offset += size) yield pcm.subarray(offset, offset + size);
}

/** `seconds` of PCM s16le silence at `rate` Hz. */
function silence(seconds, rate) {
  return Buffer.alloc(2 * Math.round(seconds * rate));
}

module.exports = { parseWav, readWav, wavBytes, writeWav, chunks, silence };
