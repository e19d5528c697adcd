#!/usr/bin/env node
'use strict';
// A spoken conversation with the VoiceMesh orchestrator from Node.js.
//
//   node talk.js --address 127.0.0.1:50060 --in question.wav --out answer.wav
//
// Lists the server's services through reflection, checks its health, then
// streams the WAV file (16-bit PCM mono) to an AgentSession in real time,
// followed by silence so the end of the turn is detected, prints the
// transcripts, the agent's words and the turn's latency, and writes the
// agent's audio to --out. An example of the voicemesh package it ships in.

const { AgentSession, chunks, silence, readWav, writeWav, loadProtos, channelCredentials, readClientKey } =
  require('./index');

const CHUNK_MS = 20;

const USAGE = `usage: node talk.js [--address HOST:PORT] [--in WAV] [--out WAV] [--stt D] [--llm D] [--tts D]
                    [--instructions TEXT] [--api-key KEY] [--timeout SECONDS] [--turns N]
Streams WAV (16-bit PCM mono) to the VoiceMesh orchestrator and writes the agent's reply audio.
Defaults: --address 127.0.0.1:50060 --out answer.wav, local models, --timeout 120, --turns 1.
The API key may also come from VOICEMESH_API_KEY or the key file of voicemesh up (~/.voicemesh/api_key);
TLS from VOICEMESH_TLS_CA (and VOICEMESH_TLS_CERT/VOICEMESH_TLS_KEY for mutual TLS).`;

function parseArgs(argv) {
  const args = {
    address: '127.0.0.1:50060',
    in: null,
    out: 'answer.wav',
    stt: 'faster-whisper/tiny.en:en',
    llm: 'llama.cpp/smollm2-135m-instruct',
    tts: 'piper/en_US-joe-medium',
    instructions: 'You are a helpful voice assistant. Answer in one short sentence.',
    'api-key': null,
    timeout: 120,
    turns: 1,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const name = argv[i].replace(/^--/, '');
    if (name === 'help' || name === 'h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (!(name in args) || i + 1 >= argv.length) {
      console.error(`talk.js: unknown or incomplete option ${argv[i]}\n${USAGE}`);
      process.exit(2);
    }
    args[name] = argv[i + 1];
    i += 1;
  }
  if (!args.in) {
    console.error(`talk.js: --in is required\n${USAGE}`);
    process.exit(2);
  }
  args.timeout = Number(args.timeout);
  args.turns = Number(args.turns);
  return args;
}

function listServices(address) {
  const { grpc: { reflection } } = loadProtos(['reflection_list.proto']);
  const client = new reflection.v1alpha.ServerReflection(address, channelCredentials());
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo();
    call.on('data', (response) => {
      resolve(response.list_services_response.service.map((s) => s.name));
      call.end();
    });
    call.on('error', reject);
    call.write({ list_services: '' });
  });
}

function checkHealth(address) {
  const { grpc: { health } } = loadProtos(['server_info.proto']);
  const client = new health.v1.Health(address, channelCredentials());
  return new Promise((resolve, reject) => {
    client.Check({ service: '' }, { deadline: Date.now() + 10000 }, (error, response) => {
      if (error) reject(error);
      else resolve(response.status);
    });
  });
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function sendAudio(session, pcm, rate) {
  const start = Date.now();
  let n = 0;
  for (const chunk of chunks(Buffer.concat([pcm, silence(2, rate)]), rate, CHUNK_MS)) {
    await session.sendAudio(chunk);
    n += 1;
    const wait = start + n * CHUNK_MS - Date.now(); // real time, as a microphone would send it
    if (wait > 0) await sleep(wait);
  }
}

async function converse(args, pcm, rate) {
  const session = new AgentSession({
    address: args.address, stt: args.stt, llm: args.llm, tts: args.tts, instructions: args.instructions,
    apiKey: args['api-key'] === null ? readClientKey() : args['api-key'],
    inputSampleRate: rate, outputSampleRate: 24000,
    startTimeoutMs: args.timeout * 1000,
  });
  const deadline = Date.now() + args.timeout * 1000;
  const result = { audio: [], outputRate: 24000, transcripts: [], metrics: [] };
  session.on('user_transcript', (event) => {
    if (!event.final) return;
    result.transcripts.push(event.text);
    console.log(`user: ${event.text}`);
  });
  session.on('agent_text', (event) => process.stdout.write(event.delta));
  session.on('agent_audio', (event) => {
    result.outputRate = event.sampleRate || result.outputRate;
    result.audio.push(event.audio);
  });
  session.on('metrics', (m) => {
    result.metrics.push(m);
    console.log(`\nturn ${m.turnId}: voice-to-voice ${m.voiceToVoiceMs.toFixed(0)} ms `
      + `(end of turn ${m.endOfUtteranceDelayMs.toFixed(0)}, STT ${m.sttFinalLatencyMs.toFixed(0)}, `
      + `LLM first token ${m.llmTtftMs.toFixed(0)}, TTS first audio ${m.ttsTtfbMs.toFixed(0)} ms)`);
  });
  session.on('error', (e) => console.error(`session error ${e.code}: ${e.message}`));
  try {
    console.log(`session ${await session.start()}`);
    const sending = sendAudio(session, pcm, rate);
    for (let turns = 0; turns < args.turns; turns += 1) {
      await session.waitFor('turn_done', { timeoutMs: Math.max(1, deadline - Date.now()) });
    }
    await sending.catch(() => {}); // the turns are done; audio still being sent does not matter
  } finally {
    session.close();
  }
  return result;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { pcm, rate } = readWav(args.in);
  const services = await listServices(args.address);
  console.log(`services at ${args.address}: ${services.join(', ')}`);
  if (!services.includes('voicemesh.v1.AgentService')) {
    throw new Error(`no voicemesh.v1.AgentService at ${args.address}`);
  }
  const status = await checkHealth(args.address);
  console.log(`health: ${status}`);
  if (status !== 'SERVING') throw new Error(`orchestrator at ${args.address} is ${status}`);
  const result = await converse(args, pcm, rate);
  const audio = Buffer.concat(result.audio);
  writeWav(args.out, audio, result.outputRate);
  console.log(`\nwrote ${(audio.length / 2 / result.outputRate).toFixed(2)} s of agent audio to ${args.out}`);
  if (!result.transcripts.length || !audio.length) throw new Error('the conversation produced no turn');
}

main().catch((error) => {
  console.error(`talk.js: ${error.name === 'AgentSessionError' ? error.message : (error.details || error.message)}`);
  process.exit(1);
});
