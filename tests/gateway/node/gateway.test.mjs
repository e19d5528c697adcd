// The openai npm SDK with its defaults against the VoiceMesh gateway: only baseURL, apiKey and model set.
// Run by tests/gateway/test_openai_node.py, which starts the mesh and sets VOICEMESH_GATEWAY_URL.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI, { toFile } from "openai";

const client = new OpenAI({ baseURL: process.env.VOICEMESH_GATEWAY_URL, apiKey: "unused" });
const QUESTION = [{ role: "user", content: "What is the capital of France? Answer in one word." }];

test("chat completion", async () => {
  const completion = await client.chat.completions.create({ model: "gpt-4o-mini", temperature: 0, messages: QUESTION });
  assert.match(completion.choices[0].message.content.toLowerCase(), /paris/);
});

test("streamed chat completion", async () => {
  const stream = await client.chat.completions.create({ model: "gpt-4.1", temperature: 0, messages: QUESTION, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.match(text.toLowerCase(), /paris/);
});

test("speech as mp3, heard back by transcription", async () => {
  const speech = await client.audio.speech.create({ model: "tts-1", voice: "alloy", input: "The train leaves the station at noon." });
  assert.equal(speech.headers.get("content-type"), "audio/mpeg");
  const mp3 = Buffer.from(await speech.arrayBuffer());
  assert.ok(mp3.length > 4000, `only ${mp3.length} bytes`);
  const transcription = await client.audio.transcriptions.create({ model: "whisper-1", file: await toFile(mp3, "speech.mp3") });
  // Each request is a new rendition of piper's voice (its noise is random), and tiny.en mishears a word of some
  // ("at noon" as "at men", 2 in 70): as the Python SDK's tests, a word may be misheard, none lost.
  const said = "the train leaves the station at noon".split(" ");
  const heard = transcription.text.toLowerCase().match(/[a-z']+/g) ?? [];
  const missed = said.filter((word) => !heard.includes(word));
  assert.ok(missed.length <= 1 && heard.length >= said.length - 1 && /train.*station/.test(heard.join(" ")),
    `heard ${JSON.stringify(transcription.text)}`);
});

test("an unknown model is a NotFoundError with OpenAI's code", async () => {
  await assert.rejects(client.chat.completions.create({ model: "gpt-9-ultra", messages: QUESTION }),
    (error) => error instanceof OpenAI.NotFoundError && error.code === "model_not_found");
});
