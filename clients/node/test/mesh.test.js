'use strict';
// The packed package, installed outside the repository, against a live local mesh (`voicemesh up`, with its
// API key). tests/clients/test_node_package.py installs the tarball, compiles examples/agent.ts, copies this
// file beside it and runs it with:
//   VOICEMESH_ADDRESS       the orchestrator
//   VOICEMESH_STATE_DIR     the mesh's state folder, whose api_key file the sessions use
//   VOICEMESH_TEST_QUESTION a WAV file of "What is the capital of France?"
//   VOICEMESH_TEST_WORK     the folder with the compiled example (out/agent.js), where answer.wav goes

const test = require('node:test');
const assert = require('node:assert');
const path = require('path');
const { spawnSync } = require('child_process');

const { AgentSession, AgentSessionError, chunks, readWav, silence } = require('voicemesh');

const ADDRESS = process.env.VOICEMESH_ADDRESS;
const QUESTION = process.env.VOICEMESH_TEST_QUESTION;
const WORK = process.env.VOICEMESH_TEST_WORK;
const TURN_MS = 120000;

test('the package resolves from the install folder, not the repository', () => {
  assert.ok(require.resolve('voicemesh').startsWith(path.join(WORK, 'node_modules')), require.resolve('voicemesh'));
});

test('the LiveKit-style TypeScript example answers one spoken question', () => {
  const answer = path.join(WORK, 'answer.wav');
  const result = spawnSync(process.execPath, [path.join(WORK, 'out', 'agent.js'), QUESTION, answer],
    { encoding: 'utf8', timeout: 180000, env: process.env });
  assert.strictEqual(result.status, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /^user: .*capital of france/im);
  assert.match(result.stdout, /voice-to-voice: \d+ ms/);
  assert.match(result.stdout, /^agent: \S/m);
  const { pcm, rate } = readWav(answer);
  assert.ok(pcm.length / 2 / rate > 0.5, `only ${pcm.length / 2 / rate} s of agent audio`);
});

test('a tool call runs its execute function and the agent answers with the result', async () => {
  const calls = [];
  const usage = [];
  const session = new AgentSession({
    address: ADDRESS,
    instructions: 'Answer questions about the weather with the get_weather tool, in one short sentence.',
    tools: {
      get_weather: {
        description: 'The current weather in a city.',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        execute: async ({ city }) => {
          calls.push(city);
          return { city, weather: 'sunny', temperature_c: 21 };
        },
      },
    },
    toolChoice: { name: 'get_weather' },
  });
  session.on('usage', (event) => usage.push(event));
  await session.start();
  try {
    await session.sendText('What is the weather in Paris?');
    const call = await session.waitFor('tool_call', { timeoutMs: TURN_MS });
    assert.strictEqual(call.name, 'get_weather');
    assert.ok(call.callId && typeof call.arguments.city === 'string' && call.arguments.city, call.argumentsJson);
    const done = await session.waitFor('turn_done', { timeoutMs: TURN_MS });
    assert.deepStrictEqual(calls, [call.arguments.city]);
    assert.ok(done.text && !done.interrupted, JSON.stringify(done));
    // Two generations served the turn: the call, then the answer with the tool's result in the history.
    assert.strictEqual(usage.filter((u) => u.service === 'llm' && u.turnId === done.turnId).length, 2);
  } finally {
    session.close();
  }
});

async function spokenTurn(session, pcm, rate, metrics) {
  for (const chunk of chunks(Buffer.concat([pcm, silence(2, rate)]), rate, 20)) await session.sendAudio(chunk);
  const done = await session.waitFor('turn_done', { timeoutMs: TURN_MS });
  const seen = metrics.find((m) => m.turnId === done.turnId);
  return seen || session.waitFor('metrics', { timeoutMs: TURN_MS, predicate: (m) => m.turnId === done.turnId });
}

test('updateModels switches the models for the next turn of the same session', async () => {
  const { pcm, rate } = readWav(QUESTION);
  const metrics = [];
  const transcripts = [];
  const session = new AgentSession({ address: ADDRESS, inputSampleRate: rate, instructions: 'Answer in one short sentence.' });
  session.on('metrics', (event) => metrics.push(event));
  session.on('user_transcript', (event) => { if (event.final) transcripts.push(event.text); });
  await session.start();
  try {
    const before = await spokenTurn(session, pcm, rate, metrics);
    assert.strictEqual(before.sttModel, 'faster-whisper/tiny.en:en');
    await session.updateModels({ stt: 'faster-whisper/tiny.en', tts: { descriptor: 'piper/en_US-joe-medium', speed: 1.5 } });
    const after = await spokenTurn(session, pcm, rate, metrics);
    assert.strictEqual(after.sttModel, 'faster-whisper/tiny.en');
    assert.ok(after.turnId > before.turnId);
    assert.strictEqual(transcripts.length, 2);
    for (const text of transcripts) assert.match(text, /capital of france/i);
  } finally {
    session.close();
  }
});

test('interrupt stops what say started', async () => {
  const session = new AgentSession({ address: ADDRESS });
  await session.start();
  try {
    await session.say('Once upon a time there was a dog who lived by the sea. Every morning he ran along the beach, '
      + 'barked at the waves, and waited for the fishing boats to come home.');
    await session.waitFor('agent_audio', { timeoutMs: TURN_MS });
    await session.interrupt();
    const done = await session.waitFor('turn_done', { timeoutMs: TURN_MS });
    assert.ok(done.interrupted, JSON.stringify(done));
    assert.doesNotMatch(done.text, /fishing boats/);
  } finally {
    session.close();
  }
});

test('a bad key fails start() with UNAUTHENTICATED and the server\'s reason', async () => {
  const refused = (pattern) => (error) => {
    assert.ok(error instanceof AgentSessionError, String(error));
    assert.strictEqual(error.code, 'UNAUTHENTICATED');
    assert.match(error.message, pattern);
    return true;
  };
  await assert.rejects(new AgentSession({ address: ADDRESS, apiKey: 'vm_000000000000_not-a-secret' }).start(),
    refused(/^UNAUTHENTICATED: unknown API key/));
  await assert.rejects(new AgentSession({ address: ADDRESS, apiKey: 'nope' }).start(),
    refused(/^UNAUTHENTICATED: missing or malformed API key/));
  // VOICEMESH_API_KEY wins over the key file, as in the Python SDK.
  process.env.VOICEMESH_API_KEY = 'vm_000000000000_from-env';
  try {
    await assert.rejects(new AgentSession({ address: ADDRESS }).start(), refused(/unknown API key/));
  } finally {
    delete process.env.VOICEMESH_API_KEY;
  }
});
