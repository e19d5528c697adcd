'use strict';
// The package's pure parts, no mesh needed: WAV helpers, model choices, key and TLS settings, error detail,
// events, and the failures a caller must see clearly. Run by tests/clients/test_node_package.py.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const voicemesh = require('..');
const { errorDetail } = require('../lib/errors');
const { fromResponse } = require('../lib/events');

const { AgentSession, AgentSessionError } = voicemesh;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'voicemesh-node-'));

function withEnv(values, body) {
  const saved = Object.fromEntries(Object.keys(values).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return body();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('WAV files round-trip and bad ones fail with their name', () => {
  const pcm = Buffer.alloc(3200);
  for (let i = 0; i < 1600; i += 1) pcm.writeInt16LE(Math.round(8000 * Math.sin(i / 5)), i * 2);
  const file = path.join(tmp, 'tone.wav');
  voicemesh.writeWav(file, pcm, 16000);
  const back = voicemesh.readWav(file);
  assert.strictEqual(back.rate, 16000);
  assert.ok(back.pcm.equals(pcm));
  assert.throws(() => voicemesh.parseWav(Buffer.from('hello'), 'x.wav'), /x.wav is not a WAV file/);
  const stereo = voicemesh.wavBytes(pcm, 16000);
  stereo.writeUInt16LE(2, 22);
  assert.throws(() => voicemesh.parseWav(stereo, 's.wav'), /only 16-bit PCM mono/);
  assert.throws(() => voicemesh.wavBytes(pcm, 0), /positive integer/);
});

test('chunks cut PCM into pieces of the given length', () => {
  const pieces = [...voicemesh.chunks(Buffer.alloc(16000 * 2 / 10 + 100), 16000, 20)];
  assert.deepStrictEqual(pieces.map((p) => p.length), [640, 640, 640, 640, 640, 100]);
  assert.strictEqual(voicemesh.silence(0.5, 24000).length, 24000);
});

test('the config carries models, fallbacks, tools and settings', () => {
  const session = new AgentSession({
    apiKey: '',
    llm: [{ descriptor: 'openai/gpt-4.1-mini', baseUrl: 'http://127.0.0.1:9/v1', apiKey: 'sk', extra: { a: 1 } },
      'llama.cpp/smollm2-135m-instruct'],
    tts: { descriptor: 'piper/en_US-joe-medium', speed: 1.5 },
    instructions: 'Be terse.',
    tools: { get_weather: { description: 'Weather.', parameters: { type: 'object' }, execute: () => 'sunny' } },
    toolChoice: { name: 'get_weather' },
    turnDetection: { minEndpointingDelayMs: 300 },
    interruption: { enabled: false },
    inputSampleRate: 8000,
  });
  const { config } = session;
  assert.strictEqual(config.stt.candidates[0].descriptor, 'faster-whisper/tiny.en:en');
  assert.deepStrictEqual(config.llm.candidates.map((c) => c.descriptor),
    ['openai/gpt-4.1-mini', 'llama.cpp/smollm2-135m-instruct']);
  assert.deepStrictEqual(config.llm.candidates[0].backend,
    { base_url: 'http://127.0.0.1:9/v1', api_key: 'sk', timeout_s: 0, extra: { a: '1' } });
  assert.strictEqual(config.tts.candidates[0].speed, 1.5);
  assert.deepStrictEqual(config.tools, [{ name: 'get_weather', description: 'Weather.', parameters_json: '{"type":"object"}' }]);
  assert.deepStrictEqual(config.tool_choice, { mode: 'function', name: 'get_weather' });
  assert.strictEqual(config.turn_detection.min_endpointing_delay_ms, 300);
  assert.strictEqual(config.interruption.enabled, false);
  assert.strictEqual(config.input_sample_rate_hz, 8000);
  const realtime = new AgentSession({ apiKey: '', realtime: 'voicemesh/cascade' }).config;
  assert.strictEqual(realtime.realtime.candidates[0].descriptor, 'voicemesh/cascade');
  assert.strictEqual(realtime.stt, undefined);
});

test('bad options fail at construction with a clear message', () => {
  assert.throws(() => new AgentSession({ apiKey: '', stt: 'whisper' }), /provider\/model\[:variant\]/);
  assert.throws(() => new AgentSession({ apiKey: '', llm: [] }), /at least one model/);
  assert.throws(() => new AgentSession({ apiKey: '', tools: [{ name: 'bad name!' }] }), /tool needs a name/);
  assert.throws(() => new AgentSession({ apiKey: '', tools: { t: { execute: 'no' } } }), /execute must be a function/);
  assert.throws(() => new AgentSession({ apiKey: '', toolChoice: 'sometimes' }), /toolChoice is/);
});

test('the key comes from VOICEMESH_API_KEY, else the key file, else the state folder', () => {
  const state = fs.mkdtempSync(path.join(tmp, 'state-'));
  fs.writeFileSync(path.join(state, 'api_key'), 'vm_state_key\n');
  const other = path.join(tmp, 'other_key');
  fs.writeFileSync(other, 'vm_file_key\n');
  const base = { VOICEMESH_STATE_DIR: state, VOICEMESH_KEY_FILE: undefined, VOICEMESH_API_KEY: undefined };
  withEnv(base, () => assert.strictEqual(voicemesh.readClientKey(), 'vm_state_key'));
  withEnv({ ...base, VOICEMESH_KEY_FILE: other }, () => assert.strictEqual(voicemesh.readClientKey(), 'vm_file_key'));
  withEnv({ ...base, VOICEMESH_API_KEY: ' vm_env_key ' }, () => assert.strictEqual(voicemesh.readClientKey(), 'vm_env_key'));
  withEnv({ ...base, VOICEMESH_STATE_DIR: path.join(tmp, 'none') }, () => assert.strictEqual(voicemesh.readClientKey(), null));
});

test('TLS settings come from VOICEMESH_TLS_* and bad ones fail clearly', () => {
  const none = { VOICEMESH_TLS_CA: undefined, VOICEMESH_TLS_CERT: undefined, VOICEMESH_TLS_KEY: undefined };
  withEnv(none, () => assert.strictEqual(voicemesh.channelCredentials()._isSecure(), false));
  withEnv({ ...none, VOICEMESH_TLS_CA: path.join(tmp, 'missing-ca.pem') }, () => {
    assert.throws(() => voicemesh.channelCredentials(), /cannot read the TLS CA certificate .*missing-ca.pem: no such file/);
    assert.throws(() => new AgentSession({ apiKey: '' }), /missing-ca.pem/);
  });
  withEnv({ ...none, VOICEMESH_TLS_CA: 'ca.pem', VOICEMESH_TLS_CERT: 'cert.pem' }, () => {
    assert.throws(() => voicemesh.channelCredentials(), /needs its key/);
  });
});

test('the ErrorDetail of a status is read from the trailing metadata', () => {
  const field = (number, bytes) => Buffer.concat([Buffer.from([(number << 3) | 2, bytes.length]), bytes]);
  const detail = Buffer.concat([field(1, Buffer.from('UNKNOWN_MODEL')), field(4, Buffer.from('piper/a')),
    field(4, Buffer.from('piper/b'))]);
  const any = Buffer.concat([field(1, Buffer.from('type.googleapis.com/voicemesh.v1.ErrorDetail')), field(2, detail)]);
  const status = Buffer.concat([Buffer.from([0x08, 5]), field(2, Buffer.from('no such voice')), field(3, any)]);
  const metadata = { get: (key) => (key === 'grpc-status-details-bin' ? [status] : []) };
  assert.deepStrictEqual(errorDetail(metadata), { reason: 'UNKNOWN_MODEL', known: ['piper/a', 'piper/b'] });
  assert.deepStrictEqual(errorDetail({ get: () => [Buffer.from([0x1a, 0x50])] }), { reason: '', known: [] });
  const error = AgentSessionError.fromGrpcError({ code: 5, details: 'no such voice', metadata });
  assert.strictEqual(error.message, 'NOT_FOUND: no such voice');
  assert.deepStrictEqual([error.code, error.reason], ['NOT_FOUND', 'UNKNOWN_MODEL']);
});

test('server messages become typed events', () => {
  assert.deepStrictEqual(fromResponse({ event: 'state', state: { state: 'AGENT_STATE_SPEAKING', turn_id: 2 } }),
    { type: 'agent_state', state: 'speaking', turnId: 2 });
  assert.strictEqual(fromResponse({ event: 'state', state: { state: 'AGENT_STATE_NEW', turn_id: 2 } }).state, 'unspecified');
  const call = fromResponse({ event: 'tool_call', tool_call: { id: 'c1', name: 'f', arguments_json: '{"x":1}' } });
  assert.deepStrictEqual(call.arguments, { x: 1 });
  assert.strictEqual(fromResponse({ event: 'tool_call', tool_call: { id: 'c', name: 'f', arguments_json: '{' } }).arguments, null);
  const audio = fromResponse({ event: 'agent_audio', agent_audio: { turn_id: 1, audio: Buffer.alloc(4800), sample_rate_hz: 24000 } });
  assert.strictEqual(audio.durationS, 0.1);
  assert.strictEqual(fromResponse({ event: 'something_new', something_new: {} }), null);
});

test('a session with no server fails to start with UNAVAILABLE', async () => {
  const server = net.createServer();
  await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
  const { port } = server.address();
  await new Promise((resolve) => { server.close(resolve); });
  const session = new AgentSession({ address: `127.0.0.1:${port}`, apiKey: '', startTimeoutMs: 20000 });
  await assert.rejects(session.start(), (error) => error instanceof AgentSessionError && error.code === 'UNAVAILABLE');
  assert.ok(session.ended);
  await assert.rejects(session.sendText('hi'), /UNAVAILABLE/);
  await assert.rejects(new AgentSession({ apiKey: '' }).sendText('hi'), /start the session first/);
});

test('listeners see every event; the queue keeps the newest maxQueuedEvents for iteration', async () => {
  const session = new AgentSession({ apiKey: '', maxQueuedEvents: 3 });
  const heard = [];
  session.on('agent_text', (event) => heard.push(event.delta));
  for (const delta of ['a', 'b', 'c', 'd', 'e']) {
    session._receive(fromResponse({ event: 'agent_text', agent_text: { turn_id: 1, delta } }));
  }
  session._finish();
  const queued = [];
  for await (const event of session) queued.push(event.delta);
  assert.deepStrictEqual(heard, ['a', 'b', 'c', 'd', 'e']);
  assert.deepStrictEqual(queued, ['c', 'd', 'e']);
  assert.strictEqual(session.droppedEvents, 2);
  await assert.rejects(session.waitFor('turn_done'), /ended before a turn_done event/);
});

test('a tool with execute answers its call; a throw or non-JSON arguments answer with { error }', async () => {
  const session = new AgentSession({
    apiKey: '',
    tools: [
      { name: 'add', execute: ({ a, b }) => a + b },
      { name: 'fail', execute: async () => { throw new Error('no network'); } },
      { name: 'manual' },
    ],
  });
  const written = [];
  session._call = { write: (request, done) => { written.push(request); done(); } }; // the stream, stubbed
  const call = (id, name, args) => session._receive(fromResponse({
    event: 'tool_call', tool_call: { id, name, arguments_json: args },
  }));
  call('c1', 'add', '{"a": 2, "b": 3}');
  call('c2', 'fail', '{}');
  call('c3', 'add', '{not json');
  call('c4', 'manual', '{}');
  await new Promise((resolve) => { setImmediate(resolve); });
  const results = Object.fromEntries(written.map((r) => [r.tool_result.call_id, r.tool_result.output]));
  assert.deepStrictEqual(results, {
    c1: '5', c2: '{"error":"no network"}', c3: '{"error":"the arguments are not JSON: {not json"}',
  });
  await session.sendToolResult('c4', { done: true });
  assert.deepStrictEqual(written.at(-1), { tool_result: { call_id: 'c4', output: '{"done":true}' } });
});
