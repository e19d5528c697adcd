'use strict';
// Typed events of an agent session, converted from SessionResponse messages: code that consumes a session
// switches on `event.type` (one of EventType) and never touches protobuf field names.

/** What an event is (the same names as the Python SDK's EventType values). */
const EventType = Object.freeze({
  SESSION_STARTED: 'session_started',
  USER_TRANSCRIPT: 'user_transcript',
  AGENT_TEXT: 'agent_text',
  AGENT_AUDIO: 'agent_audio',
  AGENT_STATE: 'agent_state',
  TOOL_CALL: 'tool_call',
  METRICS: 'metrics',
  USAGE: 'usage',
  ERROR: 'error',
  TURN_DONE: 'turn_done',
});

/** What the agent is doing. */
const AgentState = Object.freeze({
  UNSPECIFIED: 'unspecified', LISTENING: 'listening', THINKING: 'thinking', SPEAKING: 'speaking',
});

const STATES = {
  AGENT_STATE_LISTENING: AgentState.LISTENING,
  AGENT_STATE_THINKING: AgentState.THINKING,
  AGENT_STATE_SPEAKING: AgentState.SPEAKING,
};

function parseArguments(text) {
  try {
    return JSON.parse(text || '{}');
  } catch {
    return null; // the model wrote something that is not JSON: argumentsJson still has it
  }
}

const CONVERTERS = {
  started: (m) => ({ type: EventType.SESSION_STARTED, sessionId: m.session_id }),
  user_transcript: (m) => ({ type: EventType.USER_TRANSCRIPT, turnId: m.turn_id, text: m.text, final: m.final }),
  agent_text: (m) => ({ type: EventType.AGENT_TEXT, turnId: m.turn_id, delta: m.delta }),
  agent_audio: (m) => ({
    type: EventType.AGENT_AUDIO, turnId: m.turn_id, audio: m.audio, sampleRate: m.sample_rate_hz,
    durationS: m.sample_rate_hz ? m.audio.length / 2 / m.sample_rate_hz : 0,
  }),
  // A state a newer server adds, which this client does not know, reads as unspecified.
  state: (m) => ({ type: EventType.AGENT_STATE, state: STATES[m.state] || AgentState.UNSPECIFIED, turnId: m.turn_id }),
  tool_call: (m) => ({
    type: EventType.TOOL_CALL, callId: m.id, name: m.name, argumentsJson: m.arguments_json,
    arguments: parseArguments(m.arguments_json),
  }),
  metrics: (m) => ({
    type: EventType.METRICS,
    turnId: m.turn_id,
    endOfUtteranceDelayMs: m.end_of_utterance_delay_ms,
    sttFinalLatencyMs: m.stt_final_latency_ms,
    llmTtftMs: m.llm_ttft_ms,
    ttsTtfbMs: m.tts_ttfb_ms,
    voiceToVoiceMs: m.voice_to_voice_ms,
    sttModel: m.stt_model,
    llmModel: m.llm_model,
    ttsModel: m.tts_model,
    fallbacks: [...m.fallbacks],
  }),
  usage: (m) => {
    const u = m.usage || {};
    return {
      type: EventType.USAGE,
      turnId: m.turn_id,
      service: m.service,
      usage: {
        model: u.model || '',
        audioSecondsIn: u.audio_seconds_in || 0,
        audioSecondsOut: u.audio_seconds_out || 0,
        inputTokens: u.input_tokens || 0,
        outputTokens: u.output_tokens || 0,
        cachedTokens: u.cached_tokens || 0,
        characters: u.characters || 0,
      },
    };
  },
  error: (m) => {
    const d = m.detail || {};
    return {
      type: EventType.ERROR, turnId: m.turn_id, code: m.code, message: m.message, reason: d.reason || '',
      retryable: Boolean(d.retryable), model: d.model || '', known: [...(d.known || [])],
    };
  },
  turn_done: (m) => ({ type: EventType.TURN_DONE, turnId: m.turn_id, text: m.text, interrupted: m.interrupted }),
};

/** The event of one SessionResponse (as @grpc/proto-loader decodes it); null for one this client does not know. */
function fromResponse(response) {
  const convert = CONVERTERS[response.event];
  return convert ? convert(response[response.event]) : null;
}

module.exports = { EventType, AgentState, fromResponse };
