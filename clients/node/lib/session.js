'use strict';
// AgentSession: one spoken conversation with a VoiceMesh orchestrator (AgentService.Session), the Node.js
// counterpart of the Python SDK's voicemesh.client.session.AgentSession.
//
// start() sends the config and waits for the server's SessionStarted; the send methods write one request
// each; events reach listeners registered with on(type, ...) and, in order, whoever iterates the session
// (for await ... of session) or waits with waitFor(). Tools with an execute function are run here when the
// agent calls them, and their result goes back on the stream.

const { AgentSessionError } = require('./errors');
const { EventType, fromResponse } = require('./events');
const { loadProtos, readClientKey, channelCredentials, authMetadata } = require('./connection');
const { toChoice, normalizeTools, toolMessages, toToolChoice } = require('./models');

const DEFAULT_ADDRESS = '127.0.0.1:50060';
const DEFAULT_STT = 'faster-whisper/tiny.en:en';
const DEFAULT_LLM = 'llama.cpp/smollm2-135m-instruct';
const DEFAULT_TTS = 'piper/en_US-joe-medium';
const END = Symbol('end of the event stream');

function audioBuffer(pcm) {
  if (Buffer.isBuffer(pcm)) return pcm;
  if (ArrayBuffer.isView(pcm)) return Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  throw new TypeError('audio is PCM s16le in a Buffer, Uint8Array or Int16Array');
}

function buildConfig(options, tools) {
  const config = {
    instructions: options.instructions || '',
    input_sample_rate_hz: options.inputSampleRate ?? 16000,
    output_sample_rate_hz: options.outputSampleRate || 0,
    first_result_timeout_ms: options.firstResultTimeoutMs || 0,
    tools: toolMessages(tools),
  };
  const pick = (name, fallback) => (options[name] === undefined ? fallback : options[name]);
  if (options.realtime) {
    config.realtime = toChoice(options.realtime);
  } else {
    for (const [name, fallback] of [['stt', DEFAULT_STT], ['llm', DEFAULT_LLM], ['tts', DEFAULT_TTS]]) {
      const value = pick(name, fallback);
      if (value !== null) config[name] = toChoice(value);
    }
  }
  if (options.turnDetection) {
    config.turn_detection = {
      min_endpointing_delay_ms: options.turnDetection.minEndpointingDelayMs || 0,
      max_endpointing_delay_ms: options.turnDetection.maxEndpointingDelayMs || 0,
    };
  }
  if (options.interruption) {
    const { enabled, minDurationMs, falseInterruptionTimeoutMs } = options.interruption;
    config.interruption = {
      min_duration_ms: minDurationMs || 0, false_interruption_timeout_ms: falseInterruptionTimeoutMs || 0,
    };
    if (enabled !== undefined) config.interruption.enabled = Boolean(enabled);
  }
  const toolChoice = toToolChoice(options.toolChoice);
  if (toolChoice) config.tool_choice = toolChoice;
  return config;
}

/** A conversation with the agent behind a VoiceMesh orchestrator. */
class AgentSession {
  constructor(options = {}) {
    this.address = options.address || DEFAULT_ADDRESS;
    this.sessionId = '';
    this._tools = normalizeTools(options.tools);
    this._config = buildConfig(options, this._tools);
    // Read now, as the Python SDK does, so a bad key file fails at construction with its path in the message.
    this._apiKey = options.apiKey !== undefined ? options.apiKey : readClientKey();
    this._credentials = options.credentials || channelCredentials(options.tls);
    this._startTimeoutMs = options.startTimeoutMs ?? 30000;
    // Listeners see every event; the queue for iteration and waitFor keeps the newest ones only, so a
    // session whose events nobody iterates (listeners only) does not hold every piece of audio for its life.
    this._maxQueued = options.maxQueuedEvents ?? 10000;
    this.droppedEvents = 0;
    this._listeners = new Map();
    this._queue = [];
    this._waiters = [];
    this._call = null;
    this._client = null;
    this._ended = false;
    this._inputEnded = false;
    this._closing = false;
    this._error = null;
  }

  /** The config message start() sends (a copy). */
  get config() {
    return JSON.parse(JSON.stringify(this._config));
  }

  // --- lifecycle -------------------------------------------------------------------------------------------

  /** Open the stream, send the config and wait for SessionStarted; resolves to the session id. */
  async start() {
    if (this._call) throw new Error('the session is already started');
    const { voicemesh } = loadProtos(['voicemesh/v1/agent.proto']);
    this._client = new voicemesh.v1.AgentService(this.address, this._credentials);
    this._call = this._client.Session(authMetadata(this._apiKey));
    this._call.on('data', (response) => this._receive(fromResponse(response)));
    this._call.on('error', (error) => {
      if (!(this._closing && error.code === 1)) this._error = AgentSessionError.fromGrpcError(error); // 1: CANCELLED
      this._finish();
    });
    this._call.on('end', () => this._finish());
    const started = this._waitForStart();
    try {
      await this._write({ config: this._config });
      const first = await started;
      this.sessionId = first.sessionId;
    } catch (error) {
      this.close();
      throw error;
    }
    return this.sessionId;
  }

  _waitForStart() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new AgentSessionError('DEADLINE_EXCEEDED',
          `no SessionStarted from ${this.address} within ${this._startTimeoutMs / 1000} s`));
      }, this._startTimeoutMs);
      this._onStart = (event) => {
        clearTimeout(timer);
        this._onStart = null;
        if (event === END) {
          reject(this._error || new AgentSessionError('UNKNOWN', 'the server ended the session before it started'));
        } else {
          resolve(event);
        }
      };
    });
  }

  /** Cancel the call if it is still open and release the channel. */
  close() {
    this._closing = true;
    if (this._call && !this._ended) this._call.cancel();
    if (this._client) this._client.close();
    this._finish();
  }

  /** Whether the stream has ended (the server finished, the call failed, or close() was called). */
  get ended() {
    return this._ended;
  }

  _finish() {
    if (this._ended) return;
    this._ended = true;
    if (this._onStart) this._onStart(END);
    this._push(END);
  }

  // --- events ----------------------------------------------------------------------------------------------

  _receive(event) {
    if (!event) return;
    if (event.type === EventType.SESSION_STARTED && this._onStart) {
      this._onStart(event);
    } else {
      this._push(event);
    }
    for (const listener of [...(this._listeners.get(event.type) || []), ...(this._listeners.get('*') || [])]) {
      try {
        listener(event);
      } catch (error) {
        // A listener's bug surfaces as an uncaught exception, as with EventEmitter, without breaking the stream.
        setImmediate(() => { throw error; });
      }
    }
    if (event.type === EventType.TOOL_CALL) this._runTool(event);
  }

  _push(item) {
    if (item === END) { // every reader, now and later, sees the end
      this._queue.push(END);
      for (const waiter of this._waiters.splice(0)) waiter(END);
      return;
    }
    const waiter = this._waiters.shift();
    if (waiter) {
      waiter(item);
      return;
    }
    if (this._queue.length >= this._maxQueued) {
      this._queue.shift();
      this.droppedEvents += 1;
    }
    this._queue.push(item);
  }

  _next() {
    if (this._queue.length) return Promise.resolve(this._queue[0] === END ? END : this._queue.shift());
    return new Promise((resolve) => { this._waiters.push(resolve); });
  }

  /** Listen to events of one type ('*' for all); listeners see every event, whether or not anyone iterates. */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, []);
    this._listeners.get(type).push(listener);
    return this;
  }

  /** Stop listening. */
  off(type, listener) {
    const list = this._listeners.get(type) || [];
    const index = list.indexOf(listener);
    if (index >= 0) list.splice(index, 1);
    return this;
  }

  /** Events until the server ends the stream; throws AgentSessionError if the call failed. */
  async* events() {
    for (;;) {
      const event = await this._next();
      if (event === END) {
        if (this._error) throw this._error;
        return;
      }
      yield event;
    }
  }

  [Symbol.asyncIterator]() {
    return this.events();
  }

  /** The next event of `type` (matching `predicate`); the events before it are taken from the queue. */
  async waitFor(type, { timeoutMs = 0, predicate = null } = {}) {
    let timer = null;
    let timedOut = false;
    const find = async () => {
      for (;;) {
        const event = await this._next();
        if (timedOut) { // the caller has gone: leave the event for the next reader
          if (event !== END) this._queue.unshift(event);
          return null;
        }
        if (event === END) {
          throw this._error || new AgentSessionError('UNKNOWN', `the session ended before a ${type} event`);
        }
        if (event.type === type && (!predicate || predicate(event))) return event;
      }
    };
    const timeout = new Promise((_, reject) => {
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new AgentSessionError('DEADLINE_EXCEEDED', `no ${type} event within ${timeoutMs / 1000} s`));
        }, timeoutMs);
      }
    });
    try {
      return await Promise.race([find(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // --- tools -----------------------------------------------------------------------------------------------

  async _runTool(call) {
    const tool = this._tools.find((t) => t.name === call.name);
    if (!tool || !tool.execute) return; // the application answers with sendToolResult()
    let output;
    try {
      if (call.arguments === null) throw new Error(`the arguments are not JSON: ${call.argumentsJson}`);
      output = await tool.execute(call.arguments, { callId: call.callId, name: call.name, session: this });
    } catch (error) {
      // The model hears what went wrong and can say so, rather than the turn waiting forever for a result.
      output = { error: String((error && error.message) || error) };
    }
    try {
      await this.sendToolResult(call.callId, output === undefined ? '' : output);
    } catch {
      // The session ended while the tool ran: nobody is waiting for the result.
    }
  }

  // --- input -----------------------------------------------------------------------------------------------

  async _write(request) {
    if (!this._call) throw new Error('start the session first (await session.start())');
    if (this._inputEnded) throw new Error('endInput() was called; the session takes no more input');
    if (this._ended) throw this._error || new AgentSessionError('CANCELLED', 'the session has ended');
    await new Promise((resolve, reject) => {
      this._call.write(request, (error) => {
        if (!error) {
          resolve();
          return;
        }
        reject(this._error || new AgentSessionError('UNAVAILABLE', `the session's stream failed: ${error.message}`));
      });
    });
  }

  /** User audio: PCM s16le mono at the session's input sample rate (10-100 ms chunks). */
  sendAudio(pcm) {
    return this._write({ audio: audioBuffer(pcm) });
  }

  /** A user message as text (a turn without speech). */
  sendText(text) {
    return this._write({ text: String(text) });
  }

  /** Switch models from the next turn on; the chat history is kept. An option left out keeps its choice. */
  updateModels({ stt, llm, tts, realtime, instructions = '' } = {}) {
    const update = { instructions };
    for (const [name, value] of [['stt', stt], ['llm', llm], ['tts', tts], ['realtime', realtime]]) {
      if (value !== undefined && value !== null) update[name] = toChoice(value);
    }
    return this._write({ update_models: update });
  }

  /** Stop the agent now, as a barge-in would. */
  interrupt() {
    return this._write({ interrupt: {} });
  }

  /** Make the agent speak `text`. */
  say(text, { addToHistory = true } = {}) {
    return this._write({ say: { text: String(text), add_to_history: addToHistory } });
  }

  /** The result of a tool call; anything but a string is sent as JSON. */
  sendToolResult(callId, output) {
    const text = typeof output === 'string' ? output : JSON.stringify(output);
    return this._write({ tool_result: { call_id: callId, output: text } });
  }

  /** No more input: the server finishes what is pending and ends the stream. */
  endInput() {
    if (!this._call || this._inputEnded) return;
    this._inputEnded = true;
    if (!this._ended) this._call.end();
  }
}

module.exports = { AgentSession, DEFAULT_ADDRESS, DEFAULT_STT, DEFAULT_LLM, DEFAULT_TTS };
