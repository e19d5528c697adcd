// A LiveKit-style agent session in TypeScript: one spoken question, the agent's spoken answer.
//
//   tsc examples/agent.ts && node examples/agent.js question.wav answer.wav
//
// The address comes from VOICEMESH_ADDRESS (default 127.0.0.1:50060, the orchestrator of `voicemesh up`);
// the API key from VOICEMESH_API_KEY or the key file `voicemesh up` writes.

import { AgentSession, chunks, readWav, silence, writeWav } from 'voicemesh';

async function main(input: string, output: string): Promise<void> {
  const { pcm, rate } = readWav(input);
  const session = new AgentSession({
    stt: 'faster-whisper/tiny.en:en',
    llm: 'llama.cpp/smollm2-135m-instruct',
    tts: 'piper/en_US-joe-medium',
    instructions: 'You are a helpful voice assistant. Answer in one short sentence.',
    address: process.env.VOICEMESH_ADDRESS || '127.0.0.1:50060',
    inputSampleRate: rate,
  });
  const audio: Buffer[] = [];
  let outputRate = 24000;
  session.on('user_transcript', (event) => {
    if (event.final) console.log(`user: ${event.text}`);
  });
  session.on('agent_text', (event) => process.stdout.write(event.delta));
  session.on('agent_audio', (event) => {
    audio.push(event.audio);
    outputRate = event.sampleRate;
  });
  session.on('metrics', (event) => console.log(`\nvoice-to-voice: ${event.voiceToVoiceMs.toFixed(0)} ms`));

  console.log(`session ${await session.start()}`);
  // The question, then 2 s of silence so the end of the turn is detected.
  for (const chunk of chunks(Buffer.concat([pcm, silence(2, rate)]), rate, 20)) await session.sendAudio(chunk);
  const done = await session.waitFor('turn_done', { timeoutMs: 120000 });
  session.close();
  writeWav(output, Buffer.concat(audio), outputRate);
  console.log(`agent: ${done.text}`);
}

main(process.argv[2] || 'question.wav', process.argv[3] || 'answer.wav').catch((error) => {
  console.error(`agent: ${error.message}`);
  process.exit(1);
});
