'use strict';
// AgentSessionError: a failed call, with the gRPC code's name and the server's message and detail.

const grpc = require('@grpc/grpc-js');

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, value]) => [value, name]));

/** The session's call failed: `code` is the gRPC status code name, `message` what the server said. */
class AgentSessionError extends Error {
  constructor(code, message, { reason = '', known = [] } = {}) {
    super(`${code}: ${message}`);
    this.name = 'AgentSessionError';
    this.code = code;
    this.details = message;
    this.reason = reason;
    this.known = known;
  }

  /** The error of a failed grpc-js call, with the ErrorDetail the server attached when there is one. */
  static fromGrpcError(error) {
    const code = CODE_NAMES[error.code] || 'UNKNOWN';
    const detail = errorDetail(error.metadata);
    return new AgentSessionError(code, error.details || error.message || '(no message)', detail);
  }
}

// The server attaches a google.rpc.Status whose details hold a voicemesh.v1.ErrorDetail. Both are tiny, so
// they are read here field by field rather than by loading google's protos into the package.
const STATUS_DETAILS = 'grpc-status-details-bin';
const ERROR_DETAIL_TYPE = 'type.googleapis.com/voicemesh.v1.ErrorDetail';

function* fields(buffer) {
  let offset = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; offset < buffer.length; shift += 7) {
      const byte = buffer[offset];
      offset += 1;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('truncated varint');
  };
  while (offset < buffer.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 0) {
      yield [tag >>> 3, varint()];
    } else if (wire === 2) {
      const length = varint();
      yield [tag >>> 3, buffer.subarray(offset, offset + length)];
      offset += length;
    } else if (wire === 1 || wire === 5) {
      offset += wire === 1 ? 8 : 4;
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
  }
}

/** { reason, known } from a call's trailing metadata; empty when absent or unreadable. */
function errorDetail(metadata) {
  const empty = { reason: '', known: [] };
  const raw = metadata && typeof metadata.get === 'function' ? metadata.get(STATUS_DETAILS)[0] : null;
  if (!Buffer.isBuffer(raw)) return empty;
  try {
    for (const [number, any] of fields(raw)) {
      if (number !== 3) continue;
      let type = '';
      let value = null;
      for (const [field, content] of fields(any)) {
        if (field === 1) type = content.toString('utf8');
        if (field === 2) value = content;
      }
      if (type !== ERROR_DETAIL_TYPE || !value) continue;
      const detail = { reason: '', known: [] };
      for (const [field, content] of fields(value)) {
        if (field === 1) detail.reason = content.toString('utf8');
        if (field === 4) detail.known.push(content.toString('utf8'));
      }
      return detail;
    }
  } catch {
    return empty; // a malformed detail must not hide the status itself
  }
  return empty;
}

module.exports = { AgentSessionError, errorDetail };
