// Compile-time checks of index.d.ts (tsc -p . in the tests): what a user writes type-checks, and misuse fails.

import { AgentSession, AgentSessionError, EventType, type Event } from 'voicemesh';

async function usage(): Promise<void> {
  const session = new AgentSession({
    llm: [{ descriptor: 'openai/gpt-4.1-mini', baseUrl: 'http://127.0.0.1:1/v1', apiKey: 'k' }, 'llama.cpp/smollm2-135m-instruct'],
    tools: {
      get_weather: {
        description: 'The weather in a city.',
        parameters: { type: 'object', properties: { city: { type: 'string' } } },
        execute: async ({ city }: { city: string }) => ({ city, weather: 'sunny' }),
      },
    },
    toolChoice: { name: 'get_weather' },
  });
  await session.start();
  const call = await session.waitFor(EventType.TOOL_CALL, { timeoutMs: 1000 });
  const name: string = call.name;
  const done = await session.waitFor('turn_done', { predicate: (event) => !event.interrupted });
  const interrupted: boolean = done.interrupted;
  session.on('agent_audio', (event) => event.audio.length + event.sampleRate);
  session.on('metrics', (event) => event.voiceToVoiceMs.toFixed(0));
  await session.updateModels({ tts: { descriptor: 'piper/en_US-joe-medium', speed: 1.5 }, instructions: 'Be terse.' });
  await session.say('Hello', { addToHistory: false });
  await session.interrupt();
  for await (const event of session) {
    if (event.type === 'user_transcript') console.log(event.final, event.text, name, interrupted);
    const any: Event = event;
    void any;
  }
  try {
    await session.sendText('hi');
  } catch (error) {
    if (error instanceof AgentSessionError) console.log(error.code, error.details);
  }

  // @ts-expect-error: a user transcript has no delta
  session.on('user_transcript', (event) => event.delta);
  // @ts-expect-error: not an event type
  await session.waitFor('no_such_event');
  // @ts-expect-error: a model needs its descriptor
  new AgentSession({ tts: { speed: 2 } });
  // @ts-expect-error: toolChoice is a mode or { name }
  new AgentSession({ toolChoice: 'sometimes' });
}

void usage;
