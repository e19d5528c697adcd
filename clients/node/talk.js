#!/usr/bin/env node
'use strict';
// A spoken conversation with the VoiceMesh orchestrator from Node.js.
//
//   node talk.js --address 127.0.0.1:50060 --in question.wav --out answer.wav
//
// Lists the server's services through reflection, checks its health, then
// streams the WAV file (16-bit PCM mono) to AgentService.Session in real time,
// followed by silence so the end of the turn is detected, prints the
// transcripts, the agent's words and the turn's latency, and writes the
// agent's audio to --out.

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { readWav, writeWav } = require('./wav');

const PROTO_ROOT = process.env.VOICEMESH_PROTOS || path.resolve(__dirname, '..', '..', 'protos');
const LOCAL_PROTOS = path.join(__dirname, 'protos');
const CHUNK_MS = 20;

const USAGE = `usage: node talk.js [--address HOST:PORT] [--in WAV] [--out WAV] [--stt D] [--llm D] [--tts D]
                    [--instructions TEXT] [--api-key KEY] [--timeout SECONDS] [--turns N]
Streams WAV (16-bit PCM mono) to the VoiceMesh orchestrator and writes the agent's reply audio.
Defaults: --address 127.0.0.1:50060 --out answer.wav, local models, --timeout 120, --turns 1.
The API key may also come from VOICEMESH_API_KEY.`;

function parseArgs(argv) {
  const args = {
    address: '127.0.0.1:50060',
    in: null,
    out: 'answer.wav',
    stt: 'faster-whisper/tiny.en:en',
    llm: 'llama.cpp/smollm2-135m-instruct',
    tts: 'piper/en_US-joe-medium',
    instructions: 'You are a helpful voice assistant. Answer in one short sentence.',
    'api-key': process.env.VOICEMESH_API_KEY || '',
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

function load(files, includeDirs) {
  const definition = protoLoader.loadSync(files, {
    keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs,
  });
  return grpc.loadPackageDefinition(definition);
}

function listServices(address) {
  const { grpc: { reflection } } = load(['reflection_list.proto'], [LOCAL_PROTOS]);
  const client = new reflection.v1alpha.ServerReflection(address, grpc.credentials.createInsecure());
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
  const { grpc: { health } } = load(['server_info.proto'], [LOCAL_PROTOS]);
  const client = new health.v1.Health(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.Check({ service: '' }, { deadline: Date.now() + 10000 }, (error, response) => {
      if (error) reject(error);
      else resolve(response.status);
    });
  });
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function sendAudio(call, pcm, rate) {
  const bytesPerChunk = (rate * CHUNK_MS / 1000) * 2;
  const silence = Buffer.alloc(rate * 2 * 2); // 2 s so the end of turn is detected
  const audio = Buffer.concat([pcm, silence]);
  const start = Date.now();
  for (let offset = 0, n = 0; offset < audio.length; offset += bytesPerChunk, n += 1) {
    call.write({ audio: audio.subarray(offset, offset + bytesPerChunk) });
    const due = start + (n + 1) * CHUNK_MS;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  }
}

function converse(args, pcm, rate) {
  const { voicemesh } = load(['voicemesh/v1/agent.proto'], [PROTO_ROOT]);
  const client = new voicemesh.v1.AgentService(args.address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (args['api-key']) metadata.set('authorization', `Bearer ${args['api-key']}`);
  const call = client.Session(metadata, { deadline: Date.now() + args.timeout * 1000 });
  const result = { audio: [], outputRate: 24000, transcripts: [], agentText: '', metrics: [], turnsDone: 0 };
  const spec = (descriptor) => ({ candidates: [{ descriptor }] });

  return new Promise((resolve, reject) => {
    call.on('data', (response) => {
      switch (response.event) {
        case 'started':
          console.log(`session ${response.started.session_id}`);
          break;
        case 'user_transcript':
          if (response.user_transcript.final) {
            result.transcripts.push(response.user_transcript.text);
            console.log(`user: ${response.user_transcript.text}`);
          }
          break;
        case 'agent_text':
          result.agentText += response.agent_text.delta;
          process.stdout.write(response.agent_text.delta);
          break;
        case 'agent_audio':
          result.outputRate = response.agent_audio.sample_rate_hz || result.outputRate;
          result.audio.push(response.agent_audio.audio);
          break;
        case 'metrics': {
          const m = response.metrics;
          result.metrics.push(m);
          console.log(`\nturn ${m.turn_id}: voice-to-voice ${m.voice_to_voice_ms.toFixed(0)} ms `
            + `(end of turn ${m.end_of_utterance_delay_ms.toFixed(0)}, STT ${m.stt_final_latency_ms.toFixed(0)}, `
            + `LLM first token ${m.llm_ttft_ms.toFixed(0)}, TTS first audio ${m.tts_ttfb_ms.toFixed(0)} ms)`);
          break;
        }
        case 'turn_done':
          result.turnsDone += 1;
          if (result.turnsDone >= args.turns) call.end();
          break;
        case 'error':
          console.error(`session error ${response.error.code}: ${response.error.message}`);
          break;
        default:
          break;
      }
    });
    call.on('error', (error) => reject(error));
    call.on('end', () => resolve(result));
    call.write({
      config: {
        instructions: args.instructions,
        stt: spec(args.stt),
        llm: spec(args.llm),
        tts: spec(args.tts),
        input_sample_rate_hz: rate,
        output_sample_rate_hz: 24000,
      },
    });
    sendAudio(call, pcm, rate).catch(reject);
  });
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
  console.error(`talk.js: ${error.details || error.message}`);
  process.exit(1);
});
