'use strict';
// VoiceMesh for Node.js: AgentSession (a spoken conversation with the orchestrator), typed events, WAV helpers.

const { AgentSession, DEFAULT_ADDRESS, DEFAULT_STT, DEFAULT_LLM, DEFAULT_TTS } = require('./lib/session');
const { AgentSessionError } = require('./lib/errors');
const { EventType, AgentState } = require('./lib/events');
const { readClientKey, channelCredentials, loadProtos, protoRoot } = require('./lib/connection');
const wav = require('./lib/wav');

module.exports = {
  AgentSession,
  AgentSessionError,
  EventType,
  AgentState,
  DEFAULT_ADDRESS,
  DEFAULT_STT,
  DEFAULT_LLM,
  DEFAULT_TTS,
  readClientKey,
  channelCredentials,
  loadProtos,
  protoRoot,
  ...wav,
};
